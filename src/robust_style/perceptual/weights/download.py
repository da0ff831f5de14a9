"""Downloading registered weights: resumable, verified, atomic.

The file streams into ``<cache>/<name>.pt.part``. If a ``.part`` from the same URL exists,
the request carries ``Range: bytes=<size>-`` (RFC 9110 §14.2); a ``206`` with a matching
``Content-Range`` appends, a ``200`` means the server ignored the range and the
download restarts. A transfer that ends early is resumed the same way, up to
``retries`` times. The finished file is checked (size, sha256, safe load; see
:mod:`.store`) and only then renamed into place. Each URL of an entry is tried in order;
a network failure or a bad file moves on to the next one.

Standard library only (``urllib``): no extra dependency, works behind the proxies
``urllib`` honours (``https_proxy`` etc.).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from robust_style import __version__
from robust_style.errors import UserError, first_line
from robust_style.perceptual.weights.cache import (
    cache_dir,
    cached_path,
    expected_sha256,
    file_sha256,
)
from robust_style.perceptual.weights.keras_h5 import install_keras_vgg19, is_hdf5
from robust_style.perceptual.weights.registry import WeightsEntry
from robust_style.perceptual.weights.store import (
    CheckResult,
    MismatchError,
    check_file,
    check_md5,
    install,
)

__all__ = ["DownloadConfig", "download", "part_path"]

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class DownloadConfig:
    """How to download.

    Attributes:
        timeout: seconds without data before a connection counts as failed.
        retries: how often a transfer that broke off is resumed (per URL).
        progress: show a tqdm progress bar on stderr.
        chunk: bytes per read.
    """

    timeout: float = 30.0
    retries: int = 3
    progress: bool = True
    chunk: int = 1 << 16


class _NetError(Exception):
    """A URL could not be fetched; the message is one line naming URL and cause."""


class _Truncated(Exception):
    """The transfer ended before all bytes arrived; the .part file is kept."""


def part_path(entry: WeightsEntry, home: Path | None = None) -> Path:
    return cached_path(entry, home).with_name(f"{entry.filename}.part")


def _part_meta(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _cause(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, socket.gaierror):
            return f"cannot resolve host ({reason.strerror or reason})"
        if isinstance(reason, ConnectionRefusedError):
            return "connection refused (is the server up?)"
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return "timed out"
        if isinstance(reason, BaseException):
            return _cause(reason)
        return str(reason)
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    line = first_line(str(exc))
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _open(url: str, start: int, timeout: float):
    headers = {"User-Agent": f"robust-style/{__version__}", "Accept-Encoding": "identity"}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
    req = urllib.request.Request(url, headers=headers)
    return urllib.request.urlopen(req, timeout=timeout)


def _fetch_once(url: str, part: Path, want_size: int | None, cfg: DownloadConfig,
                label: str) -> int:
    """One request; appends to or restarts ``part``. Returns the total size reached.

    Raises:
        _NetError: the server could not be reached or refused the request.
        _Truncated: bytes stopped coming before the announced length.
        MismatchError: the server announces a size other than the registry's.
    """
    start = part.stat().st_size if part.exists() else 0
    if want_size is not None and start == want_size:
        return start
    if want_size is not None and start > want_size:
        part.unlink()
        start = 0
    try:
        resp = _open(url, start, cfg.timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start > 0:
            whole = re.search(r"/(\d+)", exc.headers.get("Content-Range", "") or "")
            if whole and int(whole.group(1)) == start:
                return start  # the partial file is already complete
            log.info("%s: server rejected the resume request; restarting", url)
            part.unlink(missing_ok=True)
            return _fetch_once(url, part, want_size, cfg, label)
        raise _NetError(f"{url}: {_cause(exc)}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise _NetError(f"{url}: {_cause(exc)}") from None
    with resp:
        status = getattr(resp, "status", None) or 200
        length = resp.headers.get("Content-Length")
        body_len = int(length) if length and length.isdigit() else None
        mode: Literal["wb", "ab"] = "wb"
        if start > 0 and status == 206:
            m = _CONTENT_RANGE.search(resp.headers.get("Content-Range", "") or "")
            if not m or int(m.group(1)) != start:
                raise _NetError(f"{url}: server answered the resume request with range "
                                f"{resp.headers.get('Content-Range')!r}, not from byte {start}")
            mode = "ab"
            total = int(m.group(3)) if m.group(3) != "*" else None
        else:
            if start > 0:
                log.info("%s: server ignored the Range request (HTTP %s); restarting from "
                         "byte 0", url, status)
            start = 0
            total = body_len
        if want_size is not None and total is not None and total != want_size:
            raise MismatchError(f"size mismatch: expected {want_size} bytes, the server "
                                f"sends {total} bytes")
        with part.open(mode) as out:
            got = start + _stream(resp, out, start, total, cfg, label, url)
    if total is not None and got < total:
        raise _Truncated(f"{url}: transfer ended after {got} of {total} bytes")
    return got


def _stream(resp: BinaryIO, out: BinaryIO, start: int, total: int | None,
            cfg: DownloadConfig, label: str, url: str) -> int:
    from tqdm import tqdm

    n = 0
    with tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
              desc=label, disable=not cfg.progress, leave=True) as bar:
        while True:
            try:
                chunk = resp.read(cfg.chunk)
            except (OSError, http.client.HTTPException) as exc:
                out.flush()
                raise _Truncated(f"{url}: transfer broke off after {start + n} bytes "
                                 f"({_cause(exc)})") from None
            if not chunk:
                break
            out.write(chunk)
            n += len(chunk)
            bar.update(len(chunk))
    return n


def _fetch(url: str, part: Path, entry: WeightsEntry, cfg: DownloadConfig) -> None:
    """Fetch ``url`` into ``part``, resuming up to ``cfg.retries`` times."""
    meta = _part_meta(part)
    try:
        same_url = json.loads(meta.read_text(encoding="utf-8")).get("url") == url
    except (OSError, ValueError, AttributeError):
        same_url = False
    if part.exists() and not same_url and not entry.sha256:
        # Without a known sha256 nothing would catch a file spliced from two different
        # files; with one, any mirror may finish what another started.
        log.info("discarding a partial download that came from another URL: %s", part)
        part.unlink()
    meta.write_text(json.dumps({"url": url}), encoding="utf-8")
    for attempt in range(cfg.retries + 1):
        try:
            _fetch_once(url, part, entry.size, cfg, entry.name)
            return
        except _NetError:
            if not part.exists():
                meta.unlink(missing_ok=True)
            raise
        except _Truncated as exc:
            if attempt == cfg.retries:
                raise _NetError(f"{exc}; the partial file {part} is kept: run the command "
                                "again to resume") from None
            log.warning("%s; resuming (%d/%d)", exc, attempt + 1, cfg.retries)


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _part_meta(part).unlink(missing_ok=True)


def download(entry: WeightsEntry, *, home: Path | None = None,
             urls: tuple[str, ...] | None = None, config: DownloadConfig | None = None,
             force: bool = False, trust: bool = False) -> tuple[Path, CheckResult | None]:
    """Download ``entry`` into the cache and check it; returns (path, check result).

    The result is ``None`` when a valid copy was already cached (and ``force`` is off).

    Raises:
        UserError: every URL failed; the message names each URL and its cause, or the
            expected and actual figures of a mismatch.
    """
    cfg = config or DownloadConfig()
    dest = cached_path(entry, home)
    sources = tuple(urls) if urls else entry.urls
    if not sources:
        raise UserError(f"{entry.name} has no public download URL; register your copy "
                        f"with `robust-style weights import {entry.name} FILE` (or pass --url)")
    if dest.is_file() and not force:
        want = expected_sha256(entry, home)
        have = file_sha256(dest, home=home)
        prefix_ok = not entry.sha256_prefix or have.startswith(entry.sha256_prefix)
        if (want is None or have == want) and prefix_ok:
            log.debug("%s is already cached: %s", entry.name, dest)
            return dest, None
        log.warning("cached %s has sha256 %s, expected %s: downloading it again",
                    entry.name, have, want or entry.sha256_prefix + "...")
    folder = cache_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    part = part_path(entry, home)
    with _exclusive(part):
        return _download_locked(entry, part, sources, cfg, home, trust)


@contextlib.contextmanager
def _exclusive(part: Path) -> Iterator[None]:
    """One download per entry at a time: an advisory lock next to the ``.part`` file.

    ``fcntl.flock`` is released by the OS when the process dies, so no stale locks. On
    platforms without ``fcntl`` (Windows) there is no lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock = part.with_name(f".{part.name.removesuffix('.part')}.lock")
    with lock.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"another process is downloading into {part}; wait for it to "
                            "finish (or stop it) and try again") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _download_locked(entry: WeightsEntry, part: Path, sources: tuple[str, ...],
                     cfg: DownloadConfig, home: Path | None,
                     trust: bool) -> tuple[Path, CheckResult]:
    failures: list[str] = []
    for i, url in enumerate(sources):
        try:
            _fetch(url, part, entry, cfg)
            if is_hdf5(part):  # Keras' VGG-19 release: md5 checked, converted, installed
                path, result = install_keras_vgg19(entry, part, source=url, home=home)
                _discard(part)
                return path, result
            check_md5(entry, part)
            result = check_file(entry, part, trust=trust, progress=cfg.progress)
        except _NetError as exc:
            failures.append(str(exc))
        except MismatchError as exc:
            _discard(part)
            failures.append(f"{url}: {exc}; the partial file was deleted")
        else:
            path = install(entry, part, result, source=url, home=home)
            _part_meta(part).unlink(missing_ok=True)
            return path, result
        if i + 1 < len(sources):  # the final error line reports the last failure
            log.warning("%s; trying the next URL", failures[-1])
    if len(failures) == 1:
        raise UserError(f"cannot download {entry.name}: {failures[0]}")
    raise UserError(f"cannot download {entry.name} from any of its {len(failures)} URLs: "
                    + " | ".join(failures))
