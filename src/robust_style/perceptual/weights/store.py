"""Checking weights files and putting them into the cache (import, verify, install).

A file enters the cache only after three checks pass: its size and sha256 match the
registry where the registry states them (torchvision entries state only the sha256 prefix
torchvision puts in its file names), and it loads with the safe loader
(:func:`~robust_style.perceptual.checkpoint.load_checkpoint`, ``weights_only=True``) into
the architecture the entry names, with ``strict=True``. Then it is moved into place with
``os.replace`` (atomic on one file system), so a cached ``<name>.pt`` is always complete.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from robust_style.errors import UserError
from robust_style.fileio import sha256_file
from robust_style.perceptual.weights.cache import (
    cache_dir,
    cached_path,
    read_record,
    remember_sha256,
    temp_path,
    write_record,
)
from robust_style.perceptual.weights.registry import WeightsEntry

__all__ = [
    "CheckResult",
    "MismatchError",
    "check_file",
    "check_md5",
    "file_md5",
    "check_loadable",
    "check_lpips_lin_file",
    "human_size",
    "import_file",
    "install",
    "verify_cached",
]

log = logging.getLogger(__name__)


class MismatchError(UserError):
    """The file is not the one the registry describes (size, sha256, or architecture)."""


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check_file` found."""

    size: int
    sha256: str
    summary: str


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def check_loadable(path: Path, backbone: str, *, trust: bool = False) -> str:
    """Load ``path`` with the safe loader into ``backbone``'s architecture (strict).

    Runs :func:`~robust_style.perceptual.backbones.build_loss_network`, the code path
    training uses, with the network on the ``meta`` device: key names and shapes are
    checked exactly, but no random initialisation is computed and no copy is made
    (about 4x faster for a ResNet-50). The checkpoint itself is fully read by
    ``torch.load(weights_only=True)``.

    Returns a one-line summary (parameter count). Raises :class:`UserError` otherwise.
    """
    import warnings

    import torch

    from robust_style.perceptual.backbones import build_loss_network

    with warnings.catch_warnings(), torch.device("meta"):
        # "copying from a non-meta parameter ... is a no-op": exactly what is wanted here.
        warnings.simplefilter("ignore", UserWarning)
        net = build_loss_network(backbone, path, trust=trust, device="meta")
    params = sum(p.numel() for p in net.parameters())
    return f"loads as {backbone} ({params / 1e6:.1f}M parameters in the tapped layers)"


def check_lpips_lin_file(path: Path) -> str:
    """Load ``path`` safely and check it holds the five LPIPS-alex linear layers."""
    from robust_style.perceptual.checkpoint import (
        check_lpips_lin,
        extract_state_dict,
        load_checkpoint,
    )

    check_lpips_lin(extract_state_dict(load_checkpoint(path), str(path)), str(path))
    return "loads as the LPIPS-alex linear layers (5 tensors)"


def file_md5(path: Path) -> str:
    """md5 of a file (only to compare with an md5 a publisher pins; our own records are
    sha256)."""
    return sha256_file(path, algorithm="md5")


def check_md5(entry: WeightsEntry, path: Path) -> None:
    """The md5 the publisher pins (``entry.md5``) of the file as published, if any."""
    if entry.md5:
        got = file_md5(path)
        if got != entry.md5:
            raise MismatchError(f"md5 mismatch: the publisher pins {entry.md5}, got {got} "
                                f"({path.stat().st_size} bytes, {path})")


def check_file(entry: WeightsEntry, path: Path, *, expected_sha256: str | None = None,
               expected_size: int | None = None, trust: bool = False,
               progress: bool = True) -> CheckResult:
    """Size, sha256 and safe-load checks of ``path`` against ``entry``.

    ``expected_sha256`` / ``expected_size`` default to the registry's figures; pass the
    ones recorded at download time to re-check a file the registry has no hash for.

    Raises:
        MismatchError: with the expected and actual figures.
    """
    size = path.stat().st_size
    want_size = expected_size if expected_size is not None else entry.size
    if want_size is not None and size != want_size:
        raise MismatchError(f"size mismatch: expected {want_size} bytes, "
                            f"got {size} bytes ({path})")
    sha = sha256_file(path, progress=progress and size > (64 << 20))
    want_sha = expected_sha256 or entry.sha256
    if want_sha and sha != want_sha:
        raise MismatchError(f"sha256 mismatch: expected {want_sha}, got {sha} "
                            f"({size} bytes, {path})")
    if entry.sha256_prefix and not sha.startswith(entry.sha256_prefix):
        raise MismatchError(f"sha256 mismatch: expected a hash starting "
                            f"{entry.sha256_prefix}, got {sha} ({size} bytes, {path})")
    with path.open("rb") as f:
        head = f.read(64)
    # torch.save writes a zip archive; torch < 1.6 (and _use_new_zipfile_serialization=False)
    # a pickle, which starts with the PROTO opcode 0x80. Anything else is not a checkpoint,
    # typically an HTML page a file host sent instead of the file.
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        raise MismatchError(f"not a torch checkpoint ({size} bytes starting {head[:24]!r}); "
                            "did the server send an error or login page instead of the file?")
    try:
        if entry.layout == "lpips-lin":
            summary = check_lpips_lin_file(path)
        else:
            summary = check_loadable(path, entry.backbone, trust=trust)
    except UserError as exc:
        raise MismatchError(str(exc)) from None
    return CheckResult(size=size, sha256=sha, summary=summary)


def install(entry: WeightsEntry, staged: Path, result: CheckResult, *, source: str,
            home: Path | None = None) -> Path:
    """Atomically move a checked file from ``staged`` (in the cache dir) into place."""
    dest = cached_path(entry, home)
    os.replace(staged, dest)
    write_record(entry, sha256=result.sha256, size=result.size, source=source, home=home)
    remember_sha256(dest, result.sha256, home)
    return dest


def import_file(entry: WeightsEntry, file: Path, *, home: Path | None = None,
                link: bool = False, trust: bool = False) -> tuple[Path, CheckResult]:
    """Check ``file`` against ``entry``, then copy (or symlink) it into the cache.

    The copy is written to a temporary file in the cache directory and renamed into
    place; a symlink is made under a temporary name and renamed the same way.
    """
    src = Path(file).expanduser()
    if not src.is_file():
        raise UserError(f"file not found: {src}")
    try:
        check_md5(entry, src)
        result = check_file(entry, src, trust=trust)
    except MismatchError as exc:
        raise MismatchError(f"cannot import {src} as {entry.name}: {exc}") from None
    folder = cache_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(cached_path(entry, home))
    try:
        if link:
            tmp.symlink_to(src.resolve())
        else:
            shutil.copyfile(src, tmp)
            copied = sha256_file(tmp)
            if copied != result.sha256:
                raise UserError(f"copy of {src} differs from the original (sha256 {copied} != "
                                f"{result.sha256}); is the disk full or the source changing?")
        dest = install(entry, tmp, result, source=f"import:{src.resolve()}", home=home)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest, result


def verify_cached(entry: WeightsEntry, *, home: Path | None = None,
                  trust: bool = False) -> CheckResult:
    """Re-check a cached file: full sha256 (never the remembered one), size, safe load.

    Compares with the registry's figures, else with those recorded at download/import.

    Raises:
        UserError: not cached. MismatchError: the file changed or is corrupt.
    """
    path = cached_path(entry, home)
    if not path.is_file():
        raise UserError(f"{entry.name} is not in the cache ({cache_dir(home)})")
    rec = read_record(entry.name, home) or {}
    rec_sha = rec.get("sha256") if isinstance(rec.get("sha256"), str) else None
    rec_size = rec.get("size") if isinstance(rec.get("size"), int) else None
    result = check_file(entry, path, expected_sha256=entry.sha256 or rec_sha,
                        expected_size=entry.size if entry.size is not None else rec_size,
                        trust=trust)
    remember_sha256(path, result.sha256, home)
    return result
