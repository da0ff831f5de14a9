"""The registry of known loss-network weights: one JSON data file.

The built-in registry is ``robust_style/perceptual/registry.json`` (package data). More
files can be layered on top, in order, with the ``ROBUST_STYLE_REGISTRY`` environment
variable (paths separated by ``os.pathsep``) or ``--registry FILE`` on the command line;
an entry in a later file replaces a built-in entry of the same name. See
``docs/weights.md`` for the format.

This module is torch-free: ``robust-style weights list`` stays fast.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

from robust_style.errors import UserError

__all__ = [
    "ARCHITECTURES",
    "LAYOUTS",
    "REGISTRY_ENV",
    "REGISTRY_FORMAT",
    "WeightsEntry",
    "Registry",
    "builtin_registry_path",
    "load_registry",
    "parse_entry",
]

#: Environment variable naming extra registry files (``os.pathsep``-separated).
REGISTRY_ENV = "ROBUST_STYLE_REGISTRY"
REGISTRY_FORMAT = "robust-style/weights-registry/v1"
#: How the tensors are laid out in the file (see docs/weights.md).
LAYOUTS = ("madry", "torchvision", "torchvision-features", "lpips-lin")
#: Architecture names of :data:`robust_style.perceptual.backbones.BACKBONES`, kept here so
#: the registry is checked without importing torch (a test keeps the two in step).
ARCHITECTURES = ("robust-resnet50", "resnet50", "vgg16", "vgg16-caffe", "vgg19", "vgg19-caffe",
                 "alexnet")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_REQUIRED = ("name", "backbone", "training", "urls", "size", "sha256", "layout", "licence",
             "citation")
_OPTIONAL = ("sha256_prefix", "md5", "source", "notes")
_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class WeightsEntry:
    """One known set of weights.

    ``urls`` are tried in order; an empty tuple means the file has no public download and
    can only be registered with ``robust-style weights import``. ``size`` (bytes) and
    ``sha256`` are ``None`` where no trustworthy source states them; a download then
    records the sha256 it computed next to the cached file.
    """

    name: str
    backbone: str
    training: str
    urls: tuple[str, ...]
    size: int | None
    sha256: str | None
    layout: str
    licence: str
    citation: str
    sha256_prefix: str = ""
    #: The md5 the publisher pins for the file as published (Keras does), checked on it.
    md5: str = ""
    source: str = ""
    notes: str = ""

    @property
    def filename(self) -> str:
        """File name in the cache directory."""
        return f"{self.name}.pt"

    @property
    def origin(self) -> str:
        """Short description of where the file comes from (host of the first URL)."""
        if not self.urls:
            return "import only"
        return urlparse(self.urls[0]).hostname or self.urls[0]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in _REQUIRED + _OPTIONAL}
        out["urls"] = list(self.urls)
        return out


def _check_url(url: str, label: str) -> None:
    """https:// or file:// only (plain http:// for loopback test servers and mirrors), and
    no credentials: no user:password and no signed query (an Azure SAS ``sig=``, which
    grants whatever its ``sp=`` permissions say to whoever holds the URL)."""
    parts = urlparse(url)
    if parts.scheme not in ("https", "file") and not (
            parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise UserError(f"{label}: url {url!r} is not https:// or file:// (plain http:// "
                        "only for 127.0.0.1 / localhost)")
    query = {k.lower() for k, _ in parse_qsl(parts.query)}
    if parts.username or parts.password or query & {"sig", "signature", "token"}:
        raise UserError(f"{label}: url {url.split('?')[0]!r} carries credentials (user "
                        "info or a signed query); use a public URL")


def parse_entry(raw: Any, where: str = "registry") -> WeightsEntry:
    """Check one raw JSON entry and build a :class:`WeightsEntry`.

    Raises:
        UserError: naming the entry and the field that is wrong.
    """
    if not isinstance(raw, Mapping):
        raise UserError(f"{where}: every entry must be a JSON object, got {type(raw).__name__}")
    label = f"{where}: entry {raw.get('name', '?')!r}"
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise UserError(f"{label} lacks field(s) {', '.join(missing)}")
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise UserError(f"{label} has unknown field(s) {', '.join(unknown)}")
    name = raw["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise UserError(f"{label}: name must be lower-case letters, digits, '.', '_' or '-'")
    if raw["backbone"] not in ARCHITECTURES:
        raise UserError(f"{label}: backbone {raw['backbone']!r} is not one of "
                        f"{', '.join(ARCHITECTURES)}")
    if raw["layout"] not in LAYOUTS:
        raise UserError(f"{label}: layout {raw['layout']!r} is not one of {', '.join(LAYOUTS)}")
    urls = raw["urls"]
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise UserError(f"{label}: urls must be a list of strings")
    for u in urls:
        _check_url(u, label)
    size = raw["size"]
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise UserError(f"{label}: size must be a positive integer (bytes) or null")
    sha = raw["sha256"]
    if sha is not None and (not isinstance(sha, str) or not _SHA_RE.match(sha)):
        raise UserError(f"{label}: sha256 must be 64 lower-case hex digits or null")
    for key in ("training", "licence", "citation"):
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise UserError(f"{label}: {key} must be a non-empty string")
    for key in _OPTIONAL:
        if key in raw and not isinstance(raw[key], str):
            raise UserError(f"{label}: {key} must be a string")
    prefix = raw.get("sha256_prefix", "")
    if prefix and not (8 <= len(prefix) <= 64 and _SHA_RE.match(prefix.ljust(64, "0"))):
        raise UserError(f"{label}: sha256_prefix must be 8 to 64 lower-case hex digits")
    if prefix and sha and not sha.startswith(prefix):
        raise UserError(f"{label}: sha256 does not start with its sha256_prefix")
    md5 = raw.get("md5", "")
    if md5 and not _MD5_RE.match(md5):
        raise UserError(f"{label}: md5 must be 32 lower-case hex digits")
    return WeightsEntry(name=name, backbone=raw["backbone"], training=raw["training"],
                        urls=tuple(urls), size=size, sha256=sha, layout=raw["layout"],
                        licence=raw["licence"], citation=raw["citation"], sha256_prefix=prefix,
                        md5=md5, source=raw.get("source", ""), notes=raw.get("notes", ""))


class Registry(Mapping[str, WeightsEntry]):
    """Known weights by name, in file order (built-in first, then overrides)."""

    def __init__(self, entries: Iterable[WeightsEntry], sources: Sequence[str] = ()) -> None:
        self._entries: dict[str, WeightsEntry] = {}
        for e in entries:
            self._entries[e.name] = e
        self.sources = tuple(sources)

    def __getitem__(self, name: str) -> WeightsEntry:
        return self._entries[name]

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def get_entry(self, name: str) -> WeightsEntry:
        """The entry called ``name``, or a :class:`UserError` listing the known names."""
        try:
            return self._entries[name]
        except KeyError:
            raise UserError(f"unknown weights {name!r}; known: {', '.join(self._entries)} "
                            "(see `robust-style weights list`)") from None


def builtin_registry_path() -> Path:
    return Path(str(resources.files("robust_style.perceptual").joinpath("registry.json")))


def _read_file(path: Path) -> list[WeightsEntry]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"registry file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"registry file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("entries"), list):
        raise UserError(f"registry file {path} must be a JSON object with an 'entries' list")
    unknown = sorted(set(data) - {"format", "comment", "entries"})
    if unknown:
        raise UserError(f"registry file {path} has unknown top-level key(s) {', '.join(unknown)}")
    fmt = data.get("format", REGISTRY_FORMAT)
    if fmt != REGISTRY_FORMAT:
        raise UserError(f"registry file {path} has format {fmt!r}; expected {REGISTRY_FORMAT!r}")
    entries = [parse_entry(raw, str(path)) for raw in data["entries"]]
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"registry file {path} lists {', '.join(dupes)} more than once")
    return entries


def load_registry(extra: Sequence[str | Path] | None = None, *, builtin: bool = True,
                  env: Mapping[str, str] | None = None) -> Registry:
    """The built-in registry, then files from ``$ROBUST_STYLE_REGISTRY``, then ``extra``."""
    env = os.environ if env is None else env
    paths: list[Path] = [builtin_registry_path()] if builtin else []
    paths += [Path(p) for p in env.get(REGISTRY_ENV, "").split(os.pathsep) if p.strip()]
    paths += [Path(p) for p in (extra or ())]
    entries: list[WeightsEntry] = []
    for p in paths:
        entries += _read_file(p)
    return Registry(entries, [str(p) for p in paths])
