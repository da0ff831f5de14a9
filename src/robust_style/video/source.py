"""Reading frames: video files (PyAV), animated GIF/WebP (Pillow), folders of frames.

Every source yields :class:`Frame` objects (``HxWx3 uint8`` RGB and a time) and
describes itself with :class:`VideoInfo`. A video file's audio packets are handed, still
encoded, to whoever wants to copy them (:attr:`VideoSource.audio_packets`), so audio is
remuxed, never re-encoded. A file that cannot be opened, or whose data ends or breaks
while decoding, raises :class:`VideoReadError`: one line naming the file (and the frame).
"""

from __future__ import annotations

import logging
import queue
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from robust_style.errors import UserError, first_line
from robust_style.imageio import IMAGE_SUFFIXES, ImageError, read_image, to_rgb

__all__ = [
    "VIDEO_SUFFIXES",
    "ANIMATION_SUFFIXES",
    "FRAME_SUFFIXES",
    "Frame",
    "VideoInfo",
    "VideoReadError",
    "VideoSource",
    "is_animation",
    "open_source",
]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"})
ANIMATION_SUFFIXES = frozenset({".gif", ".webp"})
FRAME_SUFFIXES = frozenset(IMAGE_SUFFIXES)
DEFAULT_FPS = Fraction(25)


class VideoReadError(UserError):
    """The input cannot be read (or stops being readable): a one-line message."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``image`` (HxWx3 uint8 RGB), its start time and duration (s)."""

    image: np.ndarray
    index: int
    time: float
    duration: float


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    kind: str  # "video", "animation" or "frames"
    width: int
    height: int
    fps: Fraction
    frames: int | None  # as declared by the container; None if unknown
    audio_codec: str | None = None


def _natural_key(p: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def is_animation(path: Path) -> bool:
    """A GIF, or a WebP with more than one frame (a still WebP is a photo)."""
    if path.suffix.lower() == ".gif":
        return True
    if path.suffix.lower() != ".webp":
        return False
    try:
        with Image.open(path) as im:
            return int(getattr(im, "n_frames", 1)) > 1
    except (OSError, UnidentifiedImageError):
        return False


class VideoSource:
    """Frames of one input; iterate once. ``audio_packets`` fills while iterating."""

    def __init__(self, info: VideoInfo) -> None:
        self.info = info
        self.audio_packets: queue.Queue[Any] = queue.Queue()
        self.audio_stream: Any = None  # the PyAV input audio stream, if any

    def __iter__(self) -> Iterator[Frame]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""


class _ContainerSource(VideoSource):
    def __init__(self, path: Path) -> None:
        import av

        try:
            self._container = av.open(str(path), metadata_errors="ignore")
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise VideoReadError(f"{path}: cannot read it as a video "
                                 f"({_short(exc)}; truncated or not a video file?)") from None
        streams = self._container.streams
        if not streams.video:
            self._container.close()
            raise VideoReadError(f"{path}: has no video stream")
        self._video = streams.video[0]
        self._video.thread_type = "AUTO"
        cc = self._video.codec_context
        fps = self._video.average_rate or self._video.guessed_rate or DEFAULT_FPS
        audio = streams.audio[0] if streams.audio else None
        if not cc.width or not cc.height:
            self._container.close()
            raise VideoReadError(f"{path}: the video stream has no frame size (corrupt?)")
        super().__init__(VideoInfo(path, "video", cc.width, cc.height, Fraction(fps),
                                   int(self._video.frames) or None,
                                   audio.codec_context.name if audio is not None else None))
        self.audio_stream = audio

    def __iter__(self) -> Iterator[Frame]:
        import av

        path, fps, n = self.info.path, self.info.fps, 0
        wanted = [s for s in (self._video, self.audio_stream) if s is not None]
        try:
            for packet in self._container.demux(wanted):
                if packet.stream is self.audio_stream:
                    if packet.dts is not None:
                        self.audio_packets.put(packet)
                    continue
                # only video packets get here
                for frame in cast("list[av.VideoFrame]", packet.decode()):
                    t = float(frame.time) if frame.time is not None else float(n / fps)
                    yield Frame(frame.to_ndarray(format="rgb24"), n, t, float(1 / fps))
                    n += 1
        except av.error.FFmpegError as exc:
            raise VideoReadError(f"{path}: truncated or corrupt after frame {n} "
                                 f"({_short(exc)})") from None
        declared = self.info.frames
        if n == 0:
            raise VideoReadError(f"{path}: no frame could be decoded (truncated or corrupt)")
        if declared and n < declared * 0.9 - 1:
            log.warning("%s: only %d of the %d frames the file declares could be decoded "
                        "(truncated?)", path, n, declared)

    def close(self) -> None:
        self._container.close()


class _AnimationSource(VideoSource):
    """Animated GIF/WebP through Pillow (per-frame durations kept)."""

    def __init__(self, path: Path) -> None:
        try:
            self._image = Image.open(path)
            self._image.load()
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
            raise VideoReadError(f"{path}: cannot read it as an animation "
                                 f"({_short(exc)})") from None
        n = int(getattr(self._image, "n_frames", 1))
        ms = float(self._image.info.get("duration") or 0) or 1000 / float(DEFAULT_FPS)
        super().__init__(VideoInfo(path, "animation", self._image.width, self._image.height,
                                   Fraction(1000 / ms).limit_denominator(1001), n))

    def __iter__(self) -> Iterator[Frame]:
        t, n = 0.0, 0
        try:
            for frame in ImageSequence.Iterator(self._image):
                ms = float(frame.info.get("duration") or 0) or 1000 / float(self.info.fps)
                yield Frame(to_rgb(frame), n, t, ms / 1000)
                t += ms / 1000
                n += 1
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise VideoReadError(f"{self.info.path}: truncated or corrupt after frame {n} "
                                 f"({_short(exc)})") from None

    def close(self) -> None:
        self._image.close()


class _FolderSource(VideoSource):
    """Image files of a folder in natural order (frame2 before frame10) at ``fps``."""

    def __init__(self, path: Path, fps: Fraction) -> None:
        self._files = sorted((f for f in path.iterdir()
                              if f.is_file() and f.suffix.lower() in FRAME_SUFFIXES),
                             key=_natural_key)
        if not self._files:
            raise VideoReadError(f"{path}: no frames (.png, .jpg, .jpeg, .webp) in the folder")
        first = self._read(self._files[0], 0)
        super().__init__(VideoInfo(path, "frames", first.shape[1], first.shape[0], fps,
                                   len(self._files)))

    @staticmethod
    def _read(f: Path, n: int) -> np.ndarray:
        try:
            return read_image(f)
        except ImageError as exc:
            raise VideoReadError(f"{f}: cannot read frame {n} ({_short(exc)})") from None

    def __iter__(self) -> Iterator[Frame]:
        fps = float(self.info.fps)
        for n, f in enumerate(self._files):
            img = self._read(f, n)
            if img.shape[:2] != (self.info.height, self.info.width):
                raise VideoReadError(f"{f}: frame {n} is {img.shape[1]}x{img.shape[0]}, the "
                                     f"first frame {self.info.width}x{self.info.height}")
            yield Frame(img, n, n / fps, 1 / fps)


def open_source(path: str | Path, fps: Fraction | None = None) -> VideoSource:
    """A video file, an animated GIF/WebP, or a folder of frames (played at ``fps``)."""
    p = Path(path)
    if p.is_dir():
        return _FolderSource(p, fps or DEFAULT_FPS)
    if not p.is_file():
        raise VideoReadError(f"no such file or folder: {p}")
    if p.suffix.lower() in ANIMATION_SUFFIXES and is_animation(p):
        return _AnimationSource(p)
    return _ContainerSource(p)


def _short(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return first_line(text, 160) or type(exc).__name__
