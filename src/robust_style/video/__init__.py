"""Video: stylise video files, animations and frame folders through the server (torch-free).

:mod:`.source` reads frames (PyAV, Pillow), :mod:`.sink` writes them (audio copied),
:mod:`.pipeline` streams them through a running server.
"""

from robust_style.video.pipeline import VideoJob, VideoJobResult, stylize_video
from robust_style.video.sink import open_sink, output_kind
from robust_style.video.source import (
    ANIMATION_SUFFIXES,
    VIDEO_SUFFIXES,
    Frame,
    VideoInfo,
    VideoReadError,
    is_animation,
    open_source,
)

__all__ = [
    "ANIMATION_SUFFIXES",
    "VIDEO_SUFFIXES",
    "Frame",
    "VideoInfo",
    "VideoJob",
    "VideoJobResult",
    "VideoReadError",
    "is_animation",
    "open_sink",
    "open_source",
    "output_kind",
    "stylize_video",
]
