"""The data plane: what every front door does with a decoded request.

The own API (:mod:`.style_api`), KServe (:mod:`.kserve`) and local ``stylize --model``
(:mod:`robust_style.server.local`) translate their messages into calls of one
:class:`DataPlane`: style lookup, request limits, the style's batcher, post-processing and
encoding (images only; KServe tensors are answered raw), timing and Triton-style
statistics. ``served`` counts images per front door (``door``). Under a memory budget
(:mod:`robust_style.server.memory`) every run goes through the style's
:class:`~robust_style.server.memory.BudgetedEngine`: untiled when it fits, else exactly tiled
(:mod:`robust_style.server.tiling`), admitted against the budget in the batcher's queue.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from robust_style.contract import MAX_PIXELS, MIN_SIDE
from robust_style.imageio import check_size, decode_image, fit_max_side, fitted_size
from robust_style.server import images
from robust_style.server.batching import Batcher, BatchResult
from robust_style.server.errors import InvalidRequest, StyleNotFound, TooManyImages
from robust_style.server.registry import ModelRegistry, StyleModel

__all__ = ["DataPlane", "Limits", "ImageOptions", "Pending", "Stylized", "Timing", "Inferred",
           "STREAM_WINDOW"]

#: Frames of one stream in flight at once (queued in the batcher ahead of the one being
#: answered), at every door that streams: the next frames are decoded and inferred while
#: the caller encodes the last, and a stream's frames batch with each other.
STREAM_WINDOW = 4
FORMATS = ("png", "jpeg", "raw")


@dataclass(frozen=True)
class Limits:
    """Request limits: pixels per image (after ``max_side``) and images per request."""

    max_pixels: int = MAX_PIXELS
    max_batch_per_request: int = 64


@dataclass(frozen=True)
class ImageOptions:
    """Post-processing and encoding of one image request."""

    strength: float | None = None
    preserve_color: bool = False
    max_side: int = 0
    #: ``"png"``, ``"jpeg"`` or ``"raw"`` (anything else is refused).
    format: str = "png"
    #: 1..100; 0 = the default 90.
    quality: int = 0

    def check(self) -> None:
        if self.strength is not None and not 0.0 <= self.strength <= 1.0:
            raise InvalidRequest(f"strength must be in [0, 1], got {self.strength:g}")
        if not 0 <= self.quality <= 100:
            raise InvalidRequest(
                f"quality must be 1..100 (0 = default 90), got {self.quality}")
        if self.format not in FORMATS:
            raise InvalidRequest(f"unknown output format {self.format}; use PNG, JPEG or RAW_RGB")


@dataclass(frozen=True)
class Timing:
    decode_ms: float
    queue_ms: float
    inference_ms: float
    encode_ms: float
    total_ms: float


@dataclass
class Pending:
    """An image request on its way through its style's batcher."""

    model: StyleModel
    content: np.ndarray
    options: ImageOptions
    door: str
    start: float
    decode_ms: float
    future: Future[BatchResult]


@dataclass(frozen=True)
class Stylized:
    """The answer to an image request: pixels, and their encoding if asked for."""

    model: StyleModel
    pixels: np.ndarray
    data: bytes
    mime_type: str
    timing: Timing


@dataclass(frozen=True)
class Inferred:
    """The answer to a tensor request (KServe): the model's output, unprocessed."""

    model: StyleModel
    output: np.ndarray


class DataPlane:
    """Lookup, limits, batching, post-processing and statistics of every request."""

    def __init__(self, registry: ModelRegistry, limits: Limits) -> None:
        self.registry, self.limits = registry, limits
        self._count_lock = threading.Lock()
        #: Images answered per front door (``"style"``, ``"kserve"``, ``"local"``).
        self.served: collections.Counter[str] = collections.Counter()

    # -- lookup ---------------------------------------------------------------------------
    def lookup(self, name: str, version: str = "") -> tuple[StyleModel, Batcher]:
        """Model and batcher of ``name`` in one registry lookup; :class:`StyleNotFound`."""
        model, batcher = self.registry.get(name)
        if version and version != model.version:
            raise StyleNotFound(f"model {name!r} has no version {version!r}", [model.version],
                                label="available versions")
        return model, batcher

    # -- images (own API, local) ----------------------------------------------------------
    def submit_image(self, data: bytes, style: str, options: ImageOptions, door: str,
                     deadline: float | None = None,
                     is_active: Callable[[], bool] | None = None) -> Pending:
        """Decode an encoded image and queue it for ``style``."""
        start = time.monotonic()
        model, batcher = self.lookup(style)
        options.check()
        content = decode_image(data, self.limits.max_pixels, options.max_side)
        return self._queue(model, batcher, content, options, door, start, deadline, is_active)

    def submit_raw(self, data: bytes, width: int, height: int, style: str,
                   options: ImageOptions, door: str, deadline: float | None = None,
                   is_active: Callable[[], bool] | None = None) -> Pending:
        """Queue raw ``height x width x 3 uint8`` RGB bytes (a video frame) for ``style``:
        no decode; the same size limits as an encoded image."""
        start = time.monotonic()
        model, batcher = self.lookup(style)
        options.check()
        if len(data) != width * height * 3:
            raise InvalidRequest(f"a raw {width}x{height} RGB image is {width * height * 3} "
                                 f"bytes, got {len(data)}")
        check_size(*fitted_size(width, height, options.max_side), self.limits.max_pixels)
        arr = np.frombuffer(data, np.uint8).reshape(height, width, 3)
        content = np.ascontiguousarray(fit_max_side(arr, options.max_side))
        return self._queue(model, batcher, content, options, door, start, deadline, is_active)

    def submit_pixels(self, pixels: np.ndarray, style: str, options: ImageOptions, door: str,
                      deadline: float | None = None,
                      is_active: Callable[[], bool] | None = None) -> Pending:
        """Queue an ``HxWx3 uint8`` RGB frame for ``style``."""
        start = time.monotonic()
        model, batcher = self.lookup(style)
        options.check()
        arr = np.asarray(pixels)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise InvalidRequest(f"frames must be HxWx3 uint8 RGB arrays, got {arr.dtype} "
                                 f"{arr.shape}")
        content = np.ascontiguousarray(fit_max_side(arr, options.max_side))
        return self._queue(model, batcher, content, options, door, start, deadline, is_active)

    def _queue(self, model: StyleModel, batcher: Batcher, content: np.ndarray,
               options: ImageOptions, door: str, start: float, deadline: float | None,
               is_active: Callable[[], bool] | None) -> Pending:
        decode_ms = (time.monotonic() - start) * 1000
        self.check_memory(model, 1, *content.shape[:2])
        future = batcher.submit(model, content[None], deadline, is_active)
        return Pending(model, content, options, door, start, decode_ms, future)

    def finish(self, pending: Pending, encode: bool = True) -> Stylized:
        """Wait for the batch, post-process, encode (if ``encode``), record statistics."""
        res = pending.future.result()
        t0 = time.monotonic()
        opt = pending.options
        out = images.finish(pending.content, res.output[0], luminance_only=opt.preserve_color,
                            strength=opt.strength)
        data, mime = b"", ""
        if encode:
            enc = images.encode_image(out, opt.format, opt.quality or 90)
            data, mime = enc.data, enc.mime_type
        now = time.monotonic()
        # Triton-style statistics count every door: decoding is the compute input,
        # post-processing and encoding the compute output.
        pending.model.stats.succeeded(1, int((now - pending.start) * 1e9),
                                      int(res.queue_seconds * 1e9),
                                      int(pending.decode_ms * 1e6),
                                      int(res.inference_seconds * 1e9), int((now - t0) * 1e9))
        self._count(pending.door, 1)
        timing = Timing(decode_ms=pending.decode_ms, queue_ms=res.queue_seconds * 1000,
                        inference_ms=res.inference_seconds * 1000,
                        encode_ms=(now - t0) * 1000, total_ms=(now - pending.start) * 1000)
        return Stylized(pending.model, out, data, mime, timing)

    # -- tensors (KServe) -----------------------------------------------------------------
    def check_batch(self, n: int, h: int, w: int) -> None:
        """The limits of an ``NxHxWx3`` batch: smallest side, pixels, images per request."""
        if h < MIN_SIDE or w < MIN_SIDE:
            raise InvalidRequest(f"image is {w}x{h} px; both sides must be at least "
                                 f"{MIN_SIDE} px")
        check_size(w, h, self.limits.max_pixels)
        if n > self.limits.max_batch_per_request:
            raise TooManyImages(f"batch of {n} images; the limit is "
                                f"{self.limits.max_batch_per_request} per request")

    def infer(self, name: str, version: str, parse: Callable[[StyleModel], np.ndarray],
              door: str, deadline: float | None = None,
              is_active: Callable[[], bool] | None = None) -> Inferred:
        """Run the batch ``parse(model)`` gives (it checks its shape with :meth:`check_batch`)."""
        start = time.monotonic_ns()
        model, batcher = self.lookup(name, version)
        try:
            batch = parse(model)
            self.check_memory(model, *batch.shape[:3])
            parsed = time.monotonic_ns()
            result = batcher.submit(model, batch, deadline, is_active).result()
            answered = time.monotonic_ns()
            y = np.ascontiguousarray(result.output)
        except Exception:
            model.stats.failed(time.monotonic_ns() - start)
            raise
        end = time.monotonic_ns()
        model.stats.succeeded(int(batch.shape[0]), end - start, int(result.queue_seconds * 1e9),
                              parsed - start, int(result.inference_seconds * 1e9), end - answered)
        self._count(door, int(batch.shape[0]))
        return Inferred(model, y)

    @staticmethod
    def check_memory(model: StyleModel, n: int, h: int, w: int) -> None:
        """Refuse now (:class:`~robust_style.server.memory.MemoryTooSmall`, answered
        RESOURCE_EXHAUSTED) a batch the memory budget can never run, tiled or not; one that
        fits later waits in the queue for its memory."""
        check = getattr(model.engine, "check", None)
        if check is not None:
            check(n, h, w)

    def _count(self, door: str, n: int) -> None:
        with self._count_lock:
            self.served[door] += n
