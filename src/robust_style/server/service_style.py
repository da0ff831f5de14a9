"""``robust_style.v1.StyleTransfer``: ListStyles, Stylize, StylizeStream."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import numpy as np

from robust_style.imageio import decode_image
from robust_style.server import images
from robust_style.server.batching import Batcher, BatchResult
from robust_style.server.metrics import Metrics
from robust_style.server.models import ModelRegistry, StyleModel
from robust_style.server.protos.robust_style.v1 import style_transfer_pb2 as pb
from robust_style.server.protos.robust_style.v1 import style_transfer_pb2_grpc as pb_grpc
from robust_style.server.rpc import Limits, ServiceError, deadline_of

__all__ = ["StyleTransferService", "SERVICE_NAME"]

log = logging.getLogger(__name__)

SERVICE_NAME = "robust_style.v1.StyleTransfer"
API = "style"
#: Frames of one stream in flight at once (decoded and queued ahead of the one answered).
STREAM_WINDOW = 4


@dataclass
class _Prepared:
    model: StyleModel
    batcher: Batcher
    content: np.ndarray
    start: float
    decode_ms: float


def lookup(registry: ModelRegistry, name: str) -> tuple[StyleModel, Batcher]:
    """The style ``name`` or NOT_FOUND naming the styles there are."""
    try:
        return registry.get(name)
    except KeyError:
        names = ", ".join(m.name for m in registry.styles()) or "none loaded"
        what = f"unknown style {name!r}" if name else "no style given"
        raise ServiceError(grpc.StatusCode.NOT_FOUND, f"{what}; available: {names}") from None


class StyleTransferService(pb_grpc.StyleTransferServicer):
    def __init__(self, registry: ModelRegistry, metrics: Metrics, limits: Limits) -> None:
        self.registry, self.metrics, self.limits = registry, metrics, limits

    # -- RPCs -----------------------------------------------------------------------------
    def ListStyles(self, request: pb.ListStylesRequest, context: grpc.ServicerContext
                   ) -> pb.ListStylesResponse:
        out = pb.ListStylesResponse()
        for m in self.registry.styles():
            out.styles.add(name=m.name, version=m.version, ready=True, file=m.file,
                           metadata=m.metadata.to_display(), providers=list(m.providers),
                           sha256=m.sha256, engine=m.engine_name, precision=m.precision,
                           engine_note=m.engine_note)
        return out

    def Stylize(self, request: pb.StylizeRequest, context: grpc.ServicerContext
                ) -> pb.StylizeResponse:
        prep = self._prepare(request)
        fut = prep.batcher.submit(prep.model, prep.content[None], deadline_of(context),
                                  context.is_active)
        return self._finish(request, prep, fut.result())

    def StylizeStream(self, request_iterator: Iterator[pb.StylizeRequest],
                      context: grpc.ServicerContext) -> Iterator[pb.StylizeResponse]:
        """Frames are decoded and queued up to :data:`STREAM_WINDOW` ahead, answered in order."""
        window: queue.Queue[tuple] = queue.Queue(maxsize=STREAM_WINDOW)
        end = object()

        def put(item: tuple) -> bool:
            while context.is_active():
                try:
                    window.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def reader() -> None:
            try:
                for req in request_iterator:
                    try:
                        prep = self._prepare(req)
                        fut = prep.batcher.submit(prep.model, prep.content[None],
                                                  deadline_of(context), context.is_active)
                    except Exception as exc:  # noqa: BLE001 - reported in order
                        put((req, None, None, exc))
                        return
                    if not put((req, prep, fut, None)):
                        return
            except Exception as exc:  # noqa: BLE001 - the client went away
                log.debug("stream reader ended: %s", exc)
            finally:
                put((end, None, None, None))

        def frames() -> Iterator[pb.StylizeResponse]:
            threading.Thread(target=reader, name="stream-reader", daemon=True).start()
            while True:
                try:
                    req, prep, fut, exc = window.get(timeout=0.5)
                except queue.Empty:
                    if not context.is_active():
                        return  # the client went away
                    continue
                if req is end:
                    return
                if exc is not None:
                    raise exc
                resp = self._finish(req, prep, fut.result())
                self.metrics.request(API, "StylizeStream.frame", req.style, "OK",
                                     resp.timing.total_ms / 1000.0)
                yield resp

        return frames()

    # -- helpers --------------------------------------------------------------------------
    def _prepare(self, req: pb.StylizeRequest) -> _Prepared:
        start = time.monotonic()
        model, batcher = lookup(self.registry, req.style)
        if req.HasField("strength") and not 0.0 <= req.strength <= 1.0:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"strength must be in [0, 1], got {req.strength:g}")
        if req.quality > 100:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"quality must be 1..100 (0 = default 90), got {req.quality}")
        if req.format not in (pb.IMAGE_FORMAT_UNSPECIFIED, pb.IMAGE_FORMAT_PNG,
                              pb.IMAGE_FORMAT_JPEG):
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"unknown output format {req.format}; use PNG or JPEG")
        content = decode_image(req.image, self.limits.max_pixels, req.max_side)
        return _Prepared(model, batcher, content, start, (time.monotonic() - start) * 1000)

    def _finish(self, req: pb.StylizeRequest, prep: _Prepared, res: BatchResult
                ) -> pb.StylizeResponse:
        t0 = time.monotonic()
        out = images.finish(prep.content, res.output[0], luminance_only=req.preserve_color,
                            strength=req.strength if req.HasField("strength") else None)
        fmt = "jpeg" if req.format == pb.IMAGE_FORMAT_JPEG else "png"
        enc = images.encode_image(out, fmt, req.quality or 90)
        now = time.monotonic()
        # Triton-style statistics count both APIs: decoding is this API's compute input,
        # post-processing and encoding its compute output.
        prep.model.stats.succeeded(1, int((now - prep.start) * 1e9), int(res.queue_seconds * 1e9),
                                   int(prep.decode_ms * 1e6), int(res.inference_seconds * 1e9),
                                   int((now - t0) * 1e9))
        timing = pb.Timing(decode_ms=prep.decode_ms, queue_ms=res.queue_seconds * 1000,
                           inference_ms=res.inference_seconds * 1000,
                           encode_ms=(now - t0) * 1000, total_ms=(now - prep.start) * 1000)
        return pb.StylizeResponse(image=enc.data, mime_type=enc.mime_type, width=out.shape[1],
                                  height=out.shape[0], style=prep.model.name,
                                  version=prep.model.version, timing=timing, id=req.id)
