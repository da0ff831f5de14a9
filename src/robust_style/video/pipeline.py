"""Stylise a video, an animation or a folder of frames through a server or locally.

Frames go to the server over one ``StylizeStream`` call (:meth:`StyleClient.stylize_frames`;
:class:`~robust_style.server.local.LocalStylizer` keeps the same window in-process):
the client decodes ahead while the server has up to ``STREAM_WINDOW`` frames of the
stream queued in its batcher (so they are batched with each other and with other
clients' requests), and answers come back in order and are encoded as they arrive.
Audio packets are copied from the input to the output as the video reaches them.

If the input turns out truncated, or the stream breaks (server gone, deadline, Ctrl-C),
the output is finished with the frames received so far, so it plays, and the error says
at which frame it stopped.
"""

from __future__ import annotations

import collections
import logging
import queue
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from robust_style.errors import UserError
from robust_style.server.client import ClientError
from robust_style.video.sink import VideoSink, open_sink, same_file
from robust_style.video.source import Frame, VideoReadError, open_source

__all__ = ["VideoJob", "VideoJobResult", "stylize_video"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoJob:
    """What to stylise and how (built by ``robust-style stylize``)."""

    input: Path
    output: Path
    style: str
    strength: float | None = None
    preserve_color: bool = False
    max_side: int = 0
    fps: Fraction | None = None  # for a folder of frames


@dataclass(frozen=True)
class VideoJobResult:
    output: Path
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def stylize_video(client: Any, job: VideoJob, *, progress: bool = True) -> VideoJobResult:
    """Run ``job`` through ``client`` (a :class:`~robust_style.server.client.StyleClient`)."""
    from tqdm import tqdm

    if same_file(job.input, job.output):
        raise UserError(f"the output {job.output} is the input; choose another output name")
    source = open_source(job.input, job.fps)
    info = source.info
    pending: collections.deque[Frame] = collections.deque()
    read_error: list[BaseException] = []

    def images() -> Any:  # runs in gRPC's request thread: errors are handed over, not raised
        try:
            for frame in source:
                pending.append(frame)
                yield frame.image
        except Exception as exc:
            read_error.append(exc)

    sink: VideoSink | None = None
    audio = _AudioCopy(source.audio_packets)
    bar = tqdm(total=info.frames, unit="frame", desc=f"stylize {job.input.name} ({job.style})",
               disable=not progress, dynamic_ncols=True, mininterval=0.5)
    start = time.perf_counter()
    stopped: BaseException | None = None
    results = client.stylize_frames(images(), job.style, strength=job.strength,
                                    preserve_color=job.preserve_color, max_side=job.max_side)
    try:
        for image in results:
            frame = pending.popleft()
            if sink is None:
                sink = open_sink(job.output, info, (image.shape[1], image.shape[0]),
                                 source.audio_stream)
            sink.write(frame, image)
            audio.copy(sink, until=frame.time + frame.duration)
            bar.update(1)
    except (ClientError, KeyboardInterrupt) as exc:
        stopped = exc
    finally:
        results.close()  # cancels the call if it is still running
        bar.close()
        seconds = time.perf_counter() - start
    if read_error and stopped is None:
        stopped = read_error[0]
    try:
        if sink is not None:
            audio.copy(sink, until=None if stopped is None else _end(sink, info))
            sink.close()
    finally:
        source.close()
    written = sink.written if sink is not None else 0
    if stopped is not None:
        raise _stopped_error(job, stopped, written) from None
    log.debug("%s: %d frames in %.1f s (%.2f frames/s) -> %s", job.input, written, seconds,
             written / max(seconds, 1e-9), job.output)
    return VideoJobResult(job.output, written, seconds)


def _end(sink: VideoSink, info: Any) -> float:
    return sink.written / float(info.fps) if info.fps else 0.0


def _stopped_error(job: VideoJob, exc: BaseException, written: int) -> UserError:
    if isinstance(exc, KeyboardInterrupt):
        why = "interrupted"
    elif isinstance(exc, VideoReadError):
        why = str(exc)
    else:
        why = f"the stream broke: {exc}"
    if written == 0:
        return UserError(f"{job.input}: {why}; nothing was written")
    return UserError(f"{job.input}: stopped at frame {written} ({why}); the {written} frames "
                     f"before it are in {job.output}, which plays")


class _AudioCopy:
    """Moves audio packets the reader found into the sink once the video has caught up."""

    def __init__(self, packets: queue.Queue[Any]) -> None:
        self._queue = packets
        self._held: collections.deque[Any] = collections.deque()

    def copy(self, sink: VideoSink, until: float | None) -> None:
        while True:
            try:
                self._held.append(self._queue.get_nowait())
            except queue.Empty:
                break
        ready = []
        while self._held:
            p = self._held[0]
            if until is not None and p.pts is not None and float(p.pts * p.time_base) > until:
                break
            ready.append(self._held.popleft())
        if ready:
            sink.add_audio(ready)
