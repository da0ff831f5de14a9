"""The local weights cache, sha256 bookkeeping, and ``--backbone NAME`` resolution.

Layout of the cache directory (:func:`cache_dir`)::

    <name>.pt          the weights, moved into place only after every check passed
    <name>.json        what was checked: size, sha256 (from the registry or computed), URL
    <name>.pt.part     an interrupted download, resumed with an HTTP Range request
    .sha256/<key>.json remembered sha256 of any file, keyed on path + size + mtime

Hashing a 100 MB checkpoint takes about a second; training records the backbone's sha256
in every checkpoint, so :func:`file_sha256` remembers it until the file's size or
modification time changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from robust_style.errors import UserError
from robust_style.fileio import atomic_write, sha256_file
from robust_style.perceptual.weights.registry import (
    ARCHITECTURES,
    Registry,
    WeightsEntry,
    load_registry,
)

__all__ = [
    "HOME_ENV",
    "cache_dir",
    "cached_path",
    "file_sha256",
    "read_record",
    "remember_sha256",
    "resolve_backbone",
    "temp_path",
    "write_json_atomic",
    "write_record",
]

log = logging.getLogger(__name__)

#: Environment variable overriding the robust-style home (weights live in ``<home>/weights``).
HOME_ENV = "ROBUST_STYLE_HOME"
_CHUNK = 1 << 20


def cache_dir(home: Path | None = None) -> Path:
    """Where downloaded weights live: ``<home>/weights``.

    ``home`` is, in order: the argument, ``$ROBUST_STYLE_HOME``, or the platform's user
    cache directory for ``robust-style`` (``~/.cache/robust-style`` on Linux). The
    directory is not created here.
    """
    if home is None:
        env = os.environ.get(HOME_ENV, "").strip()
        if env:
            home = Path(env).expanduser()
        else:
            import platformdirs

            home = Path(platformdirs.user_cache_dir("robust-style"))
    return Path(home) / "weights"


def cached_path(entry: WeightsEntry | str, home: Path | None = None) -> Path:
    name = entry.name if isinstance(entry, WeightsEntry) else entry
    return cache_dir(home) / f"{name}.pt"


def _record_path(name: str, home: Path | None) -> Path:
    return cache_dir(home) / f"{name}.json"


def temp_path(path: Path) -> Path:
    """A unique temporary name beside ``path`` (same directory, so ``os.replace`` is atomic).

    Files created under it get the usual permissions (umask), unlike ``mkstemp``'s 0600.
    """
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON via a temp file in the same directory and ``os.replace``."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(dict(data), f, indent=2, sort_keys=True)
        f.write("\n")


def read_record(name: str, home: Path | None = None) -> dict[str, Any] | None:
    """The record written when ``name`` was downloaded or imported, if any."""
    try:
        data = json.loads(_record_path(name, home).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_record(entry: WeightsEntry, *, sha256: str, size: int, source: str,
                 home: Path | None = None) -> None:
    write_json_atomic(_record_path(entry.name, home), {
        "name": entry.name,
        "backbone": entry.backbone,
        "file": entry.filename,
        "size": size,
        "sha256": sha256,
        "sha256_from": "registry" if entry.sha256 else "computed",
        "source": source,
        "installed": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })


def _hash_key(path: Path, home: Path | None) -> tuple[Path, dict[str, Any]]:
    real = path.resolve()
    st = real.stat()
    key = hashlib.sha1(str(real).encode()).hexdigest()[:20]
    return (cache_dir(home) / ".sha256" / f"{key}.json",
            {"path": str(real), "size": st.st_size, "mtime_ns": st.st_mtime_ns})


def remember_sha256(path: Path, sha256: str, home: Path | None = None) -> None:
    """Note ``sha256`` for ``path`` as it is now (size and mtime); best effort."""
    try:
        memo, stamp = _hash_key(path, home)
        write_json_atomic(memo, {**stamp, "sha256": sha256})
    except OSError as exc:
        log.debug("cannot remember sha256 of %s: %s", path, exc)


def file_sha256(path: str | Path, *, home: Path | None = None) -> str:
    """sha256 of ``path``, remembered until its size or mtime changes.

    Raises:
        UserError: the file does not exist.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"file not found: {p}")
    memo, stamp = _hash_key(p, home)
    try:
        old = json.loads(memo.read_text(encoding="utf-8"))
        if all(old.get(k) == v for k, v in stamp.items()) and isinstance(old.get("sha256"), str):
            return str(old["sha256"])
    except (OSError, ValueError):
        pass
    sha = sha256_file(p, progress=stamp["size"] > 64 * _CHUNK)
    remember_sha256(p, sha, home)
    return sha


def expected_sha256(entry: WeightsEntry, home: Path | None = None) -> str | None:
    """The registry's sha256, else the one recorded when the file was first fetched."""
    if entry.sha256:
        return entry.sha256
    rec = read_record(entry.name, home)
    sha = rec.get("sha256") if rec else None
    return sha if isinstance(sha, str) else None


def _fetch_hint(entry: WeightsEntry) -> str:
    if entry.urls:
        return f"`robust-style weights download {entry.name}`"
    return f"`robust-style weights import {entry.name} FILE`"


def resolve_backbone(backbone: str, weights: str | Path | None, *, home: Path | None = None,
                     registry: Registry | None = None) -> tuple[str, Path | None]:
    """``--backbone`` / ``--backbone-weights`` as the user gave them -> (architecture, file).

    * An architecture name (``robust-resnet50``, ``resnet50``, ``vgg16``, ``vgg16-caffe``,
      ``vgg19``) returns ``weights`` as given (a :class:`Path`, or ``None``). ``weights``
      may itself be a registry name for that architecture. A name that is both an
      architecture and a registry entry (``vgg16-caffe``) with no ``weights`` resolves to
      the registered file, so it never silently means random initialisation.
    * A registry name (``robust-resnet50-l2-3``, ...) returns the entry's architecture
      and its cached file. The file is re-hashed only if its size or mtime changed since
      it was checked; a mismatch against the expected sha256 is an error.

    Raises:
        UserError: unknown name, weights not cached (naming the command that fetches
            them), both a registry name and ``weights`` given, or a corrupt cached file.
    """
    reg = registry if registry is not None else load_registry()
    if backbone in ARCHITECTURES:
        if weights is None:
            if backbone in reg:  # e.g. vgg16-caffe: an architecture and its registered weights
                return reg[backbone].backbone, _cached_checked(reg[backbone], home)
            return backbone, None
        if not Path(weights).exists() and str(weights) in reg:
            entry = reg[str(weights)]
            if entry.backbone != backbone:
                raise UserError(f"weights {entry.name!r} are for backbone {entry.backbone!r}, "
                                f"not {backbone!r}")
            return backbone, _cached_checked(entry, home)
        return backbone, Path(weights)
    if backbone in reg:
        entry = reg[backbone]
        if weights is not None:
            raise UserError(f"--backbone {backbone} names registered weights; drop the weights "
                            f"file {weights} or use --backbone {entry.backbone}")
        return entry.backbone, _cached_checked(entry, home)
    raise UserError(f"unknown backbone {backbone!r}; choose an architecture "
                    f"({', '.join(ARCHITECTURES)}) or registered weights "
                    f"({', '.join(reg)}; see `robust-style weights list`)")


def _cached_checked(entry: WeightsEntry, home: Path | None) -> Path:
    path = cached_path(entry, home)
    if not path.is_file():
        raise UserError(f"weights {entry.name!r} are not in the cache ({cache_dir(home)}); "
                        f"fetch them with {_fetch_hint(entry)}")
    want = expected_sha256(entry, home)
    got = file_sha256(path, home=home)
    if want and got != want:
        raise UserError(f"cached weights {path} are corrupt: sha256 {got}, expected {want}; "
                        f"fetch them again with {_fetch_hint(entry)}")
    return path
