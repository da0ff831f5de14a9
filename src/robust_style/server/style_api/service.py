"""``robust_style.v1.StyleTransfer``: ListStyles, Stylize, StylizeStream."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator

import grpc

from robust_style.server.dataplane import STREAM_WINDOW, DataPlane, ImageOptions, Pending, Stylized
from robust_style.server.interceptors import deadline_of
from robust_style.server.metrics import Metrics
from robust_style.server.protos.robust_style.v1 import style_transfer_pb2 as pb
from robust_style.server.protos.robust_style.v1 import style_transfer_pb2_grpc as pb_grpc

__all__ = ["StyleTransferService", "SERVICE_NAME", "options_of"]

log = logging.getLogger(__name__)

SERVICE_NAME = "robust_style.v1.StyleTransfer"
API = "style"


_FORMATS = {pb.IMAGE_FORMAT_UNSPECIFIED: "png", pb.IMAGE_FORMAT_PNG: "png",
            pb.IMAGE_FORMAT_JPEG: "jpeg", pb.IMAGE_FORMAT_RAW_RGB: "raw"}


def options_of(req: pb.StylizeRequest) -> ImageOptions:
    """The data plane's options of a ``StylizeRequest``."""
    return ImageOptions(strength=req.strength if req.HasField("strength") else None,
                        preserve_color=req.preserve_color, max_side=req.max_side,
                        format=_FORMATS.get(req.format, str(req.format)), quality=req.quality)


class StyleTransferService(pb_grpc.StyleTransferServicer):
    def __init__(self, plane: DataPlane, metrics: Metrics) -> None:
        self.plane, self.registry, self.metrics = plane, plane.registry, metrics

    # -- RPCs -----------------------------------------------------------------------------
    def ListStyles(self, request: pb.ListStylesRequest, context: grpc.ServicerContext
                   ) -> pb.ListStylesResponse:
        out = pb.ListStylesResponse()
        for m in self.registry.styles():
            out.styles.add(**m.describe())
        return out

    def Stylize(self, request: pb.StylizeRequest, context: grpc.ServicerContext
                ) -> pb.StylizeResponse:
        pending = self._submit(request, context)
        return self._answer(request, self.plane.finish(pending))

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
                        pending = self._submit(req, context)
                    except Exception as exc:
                        put((req, None, exc))
                        return
                    if not put((req, pending, None)):
                        return
            except Exception as exc:
                log.debug("stream reader ended: %s", exc)
            finally:
                put((end, None, None))

        def frames() -> Iterator[pb.StylizeResponse]:
            threading.Thread(target=reader, name="stream-reader", daemon=True).start()
            while True:
                try:
                    req, pending, exc = window.get(timeout=0.5)
                except queue.Empty:
                    if not context.is_active():
                        return  # the client went away
                    continue
                if req is end:
                    return
                if exc is not None:
                    raise exc
                resp = self._answer(req, self.plane.finish(pending))
                self.metrics.request(API, "StylizeStream.frame", req.style, "OK",
                                     resp.timing.total_ms / 1000.0)
                yield resp

        return frames()

    # -- translation ----------------------------------------------------------------------
    def _submit(self, req: pb.StylizeRequest, context: grpc.ServicerContext) -> Pending:
        if req.raw_width or req.raw_height:
            return self.plane.submit_raw(req.image, req.raw_width, req.raw_height, req.style,
                                         options_of(req), API, deadline_of(context),
                                         context.is_active)
        return self.plane.submit_image(req.image, req.style, options_of(req), API,
                                       deadline_of(context), context.is_active)

    @staticmethod
    def _answer(req: pb.StylizeRequest, out: Stylized) -> pb.StylizeResponse:
        t = out.timing
        timing = pb.Timing(decode_ms=t.decode_ms, queue_ms=t.queue_ms,
                           inference_ms=t.inference_ms, encode_ms=t.encode_ms,
                           total_ms=t.total_ms)
        return pb.StylizeResponse(image=out.data, mime_type=out.mime_type,
                                  width=out.pixels.shape[1], height=out.pixels.shape[0],
                                  style=out.model.name, version=out.model.version,
                                  timing=timing, id=req.id)
