"""Writing frames: video files (PyAV, audio packets copied), animated GIF/WebP, folders.

Every sink writes to a temporary name beside the target and renames it on
:meth:`VideoSink.close`, so the target is either absent or a complete, playable file:
a stream that breaks mid-way is closed normally (encoder flushed, container trailer
written) with the frames received so far. The target is never the input file.

Video codecs by suffix: ``.mp4 .m4v .mov .mkv`` H.264 (libx264, CRF 18), ``.webm`` VP9,
``.avi`` MPEG-4 Part 2. Frames with an odd width or height are encoded 4:4:4 (4:2:0 needs
even sides) so the size is kept exactly. Audio is remuxed, not re-encoded; when the
target container cannot hold the input's audio codec the audio is left out with a
warning (``.mkv`` holds every codec).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import numpy as np
from PIL import Image

from robust_style.errors import UserError
from robust_style.video.source import ANIMATION_SUFFIXES, VIDEO_SUFFIXES, Frame, VideoInfo

__all__ = ["VideoSink", "open_sink", "output_kind", "same_file"]

log = logging.getLogger(__name__)

_CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264",
           ".webm": "libvpx-vp9", ".avi": "mpeg4"}
_OPTIONS = {"libx264": {"crf": "18", "preset": "veryfast"},
            "libvpx-vp9": {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "8"},
            "mpeg4": {"qscale": "2"}}
#: Audio codecs each container can hold when copied (``.mkv`` takes anything).
_AUDIO_OK = {".mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"},
             ".m4v": {"aac", "mp3", "alac", "ac3", "eac3"},
             ".mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s24le"},
             ".webm": {"opus", "vorbis"},
             ".avi": {"mp3", "ac3", "pcm_s16le", "aac"}}


def output_kind(path: Path) -> str | None:
    """``"video"``, ``"animation"`` or None (not a video target) from the suffix."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in ANIMATION_SUFFIXES:
        return "animation"
    return None


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


class VideoSink:
    """Frames out, in order; :meth:`close` makes the result visible at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0

    def write(self, frame: Frame, image: np.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError

    def add_audio(self, packets: Iterable[Any], until: float | None = None) -> None:
        """Copy encoded audio packets (up to ``until`` seconds); only video files keep them."""

    def close(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def _tmp(self) -> Path:
        return self.path.with_name(f".{self.path.stem}.{os.getpid()}.tmp{self.path.suffix}")


class _ContainerSink(VideoSink):
    def __init__(self, path: Path, info: VideoInfo, size: tuple[int, int],
                 audio: Any = None) -> None:
        import av

        super().__init__(path)
        suffix = path.suffix.lower()
        codec = _CODECS[suffix]
        width, height = size
        odd = width % 2 or height % 2
        if odd and codec == "mpeg4":
            raise UserError(f"{path}: .avi (MPEG-4) needs an even frame size, the frames are "
                            f"{width}x{height}; write .mp4 or .mkv")
        self._tmp_path = self._tmp()
        self._out = av.open(str(self._tmp_path), "w", format=_format_for(suffix))
        fps = info.fps if info.fps and info.fps > 0 else Fraction(25)
        self._fps = fps.limit_denominator(1001)
        # every codec of _CODECS is a video codec
        self._video = cast("av.VideoStream", self._out.add_stream(codec, rate=self._fps,
                                                                  options=_OPTIONS[codec]))
        self._video.width, self._video.height = width, height
        self._video.pix_fmt = "yuv444p" if odd else "yuv420p"
        self._audio_in, self._audio = audio, None
        if audio is not None:
            name = audio.codec_context.name
            if suffix in _AUDIO_OK and name not in _AUDIO_OK[suffix]:
                log.warning("%s: the %s audio cannot be copied into %s; written without "
                            "audio (write .mkv to keep it)", path, name, suffix)
            else:
                self._audio = self._out.add_stream_from_template(audio)
        self._pts0 = 0

    def write(self, frame: Frame, image: np.ndarray) -> None:
        import av

        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        # Constant frame rate at the input's average rate, starting where the input's
        # first frame starts (so copied audio stays in sync).
        if self.written == 0:
            self._pts0 = round(frame.time * self._fps)
        vf.pts = self._pts0 + self.written
        vf.time_base = 1 / self._fps
        for packet in self._video.encode(vf):
            self._out.mux(packet)
        self.written += 1

    def add_audio(self, packets: Iterable[Any], until: float | None = None) -> None:
        if self._audio is None:
            return
        for packet in packets:
            if until is not None and packet.pts is not None and \
                    float(packet.pts * packet.time_base) > until:
                continue
            packet.stream = self._audio
            self._out.mux(packet)

    def close(self) -> None:
        try:
            for packet in self._video.encode():
                self._out.mux(packet)
        finally:
            self._out.close()
        os.replace(self._tmp_path, self.path)


class _AnimationSink(VideoSink):
    """GIF or animated WebP through Pillow, per-frame durations kept, looping."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._frames: list[Image.Image] = []
        self._durations: list[int] = []

    def write(self, frame: Frame, image: np.ndarray) -> None:
        self._frames.append(Image.fromarray(image))
        self._durations.append(max(10, round(frame.duration * 1000)))
        self.written += 1

    def close(self) -> None:
        if not self._frames:
            return
        tmp = self._tmp()
        fmt = "GIF" if self.path.suffix.lower() == ".gif" else "WEBP"
        extra: dict[str, Any] = {"optimize": False} if fmt == "GIF" else {"quality": 90,
                                                                           "method": 4}
        self._frames[0].save(tmp, format=fmt, save_all=True, append_images=self._frames[1:],
                             duration=self._durations, loop=0, **extra)
        os.replace(tmp, self.path)


class _FolderSink(VideoSink):
    """``frame_000001.png``... in a folder (each file written atomically)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        path.mkdir(parents=True, exist_ok=True)

    def write(self, frame: Frame, image: np.ndarray) -> None:
        from robust_style.fileio import atomic_write_bytes
        from robust_style.server.images import encode_image

        atomic_write_bytes(self.path / f"frame_{frame.index + 1:06d}.png",
                           encode_image(image, "png").data)
        self.written += 1

    def close(self) -> None:
        pass


def open_sink(path: Path, info: VideoInfo, size: tuple[int, int],
              audio: Any = None) -> VideoSink:
    """A sink for ``path``: a video file, a GIF/WebP, or else a folder of PNG frames.

    ``size`` is the (width, height) of the frames that will be written.
    """
    if same_file(info.path, path):
        raise UserError(f"the output {path} is the input; choose another output name")
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = output_kind(path)
    if kind == "video":
        return _ContainerSink(path, info, size, audio)
    if kind == "animation":
        return _AnimationSink(path)
    return _FolderSink(path)


def _format_for(suffix: str) -> str:
    return {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
            ".avi": "avi"}[suffix]
