"""Atomic file writes and file hashing, shared by every module that writes files people use.

A reader (or a crash) must only ever see the old file or the complete new one: the data goes
to a temporary file in the *same directory* (so the final rename stays on one file system),
is flushed and ``fsync``-ed, and is then moved into place with :func:`os.replace`, which
POSIX ``rename(2)`` guarantees to be atomic. On any exception the temporary file is removed
and the old target is left untouched.

Torch-free and standard library only, so the serving path and the CLI can import it cheaply.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "file_mode",
    "sha256_file",
]

_CHUNK = 1 << 20
_MODES = ("w", "wt", "wb")


def _current_umask() -> int:
    """The process umask, read without changing it where Linux allows (``/proc``)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # Fallback: os.umask can only be read by setting it, so set it back at once.
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file: ``0o666 & ~umask``.

    ``tempfile.mkstemp`` creates files as 0600, which would make every atomically written
    file private to its owner; the written files are not secrets, so they get this mode.
    """
    return 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", *,
                 encoding: str | None = None, newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` atomically.

    The temporary file is ``.NAME.XXXXXXXX.tmp`` in ``path``'s directory (created if
    missing). Its name ends in ``.tmp``, so writers that infer a format from the file name
    (PIL) must be given the format explicitly. On leaving the block the file is flushed,
    ``fsync``-ed, given :func:`file_mode` permissions and ``os.replace``-d onto ``path``. If
    the block (or any of those steps) raises, the temporary file is deleted and ``path`` is
    left as it was.

    Args:
        path: the target file.
        mode: ``"wb"`` (default) for bytes, ``"w"``/``"wt"`` for text.
        encoding, newline: as for :func:`open`, text mode only.

    Yields:
        The open file object.
    """
    if mode not in _MODES:
        raise ValueError(f"atomic_write mode must be one of {_MODES}, not {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        try:
            fh = os.fdopen(fd, mode, encoding=encoding, newline=newline)
        except BaseException:
            os.close(fd)
            raise
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); returns ``path``."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8",
                      newline: str | None = None) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`); returns ``path``."""
    with atomic_write(path, "w", encoding=encoding, newline=newline) as fh:
        fh.write(text)
    return Path(path)


def sha256_file(path: str | os.PathLike[str], *, chunk_size: int = _CHUNK,
                on_chunk: Callable[[int], object] | None = None,
                progress: bool = False, algorithm: str = "sha256") -> str:
    """Hex sha256 of a file, read ``chunk_size`` bytes (1 MiB) at a time.

    ``on_chunk(n)`` is called after each chunk of ``n`` bytes (e.g. a tqdm bar's ``update``);
    ``progress`` shows a tqdm bar (for files of hundreds of MB). ``algorithm`` (a
    :mod:`hashlib` name) is only for an md5 a publisher pins; our own records are sha256.
    """
    if progress and on_chunk is None:
        from tqdm import tqdm

        name = Path(path).name
        with tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, unit_divisor=1024,
                  desc=f"{algorithm} {name}", leave=False) as bar:
            return sha256_file(path, chunk_size=chunk_size, on_chunk=bar.update,
                               algorithm=algorithm)
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            h.update(chunk)
            if on_chunk is not None:
                on_chunk(len(chunk))
    return h.hexdigest()
