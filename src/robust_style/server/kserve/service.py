"""KServe v2 ``inference.GRPCInferenceService`` (the protocol Triton speaks).

Each style is a model with one input ``image`` (``UINT8``, ``[-1, -1, -1, 3]``) and one
output ``stylized`` (same), as in :mod:`robust_style.contract`. Raw tensors in and out:
no decoding, no post-processing. Versions are numeric strings as in Triton (``"1"``, then
one more per reload; :mod:`robust_style.server.registry`); requests may leave the version
empty. ``ModelStreamInfer`` reports per-request errors in ``error_message`` (Triton's
convention), keeps the stream open and records each request's real latency. Model
configuration, statistics, metadata and explicit model control are in
:mod:`robust_style.server.kserve.management` and the tensor checks in :mod:`.tensors`, both
shared with the HTTP/REST front door (:mod:`robust_style.server.rest`); ``ServerMetadata.extensions`` lists exactly
those extensions (:data:`EXTENSIONS`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import grpc
import numpy as np

from robust_style.server.dataplane import DataPlane
from robust_style.server.errors import InvalidRequest
from robust_style.server.interceptors import deadline_of, status_of
from robust_style.server.kserve.management import EXTENSIONS, KServeManagement
from robust_style.server.kserve.tensors import DATATYPE, batch_of, check_outputs
from robust_style.server.metrics import Metrics
from robust_style.server.protos.inference import grpc_service_pb2 as pb
from robust_style.server.protos.inference import grpc_service_pb2_grpc as pb_grpc
from robust_style.server.registry import StyleModel
from robust_style.triton_config import PLATFORM, PLATFORMS

__all__ = ["KServeService", "SERVICE_NAME", "PLATFORM", "PLATFORMS", "EXTENSIONS"]

log = logging.getLogger(__name__)

SERVICE_NAME = "inference.GRPCInferenceService"
API = "kserve"


class KServeService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane, metrics: Metrics, ready: Callable[[], bool]) -> None:
        self.plane, self.registry, self.metrics, self._ready = plane, plane.registry, metrics, ready
        self.management = KServeManagement(plane)

    # -- server and models (:mod:`.management`, shared with HTTP) -------------------------
    def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=bool(self._ready()))

    def ServerMetadata(self, request, context):
        return self.management.server_metadata()

    def ModelReady(self, request, context):
        return pb.ModelReadyResponse(ready=self.management.model_ready(request.name,
                                                                       request.version))

    def ModelMetadata(self, request, context):
        return self.management.model_metadata(request.name, request.version)

    # -- inference ------------------------------------------------------------------------
    def ModelInfer(self, request, context):
        return self._infer(request, context)

    def ModelStreamInfer(self, request_iterator, context):
        for request in request_iterator:
            start = time.monotonic()
            try:
                resp = self._infer(request, context)
            except Exception as exc:
                code, message = status_of(exc)
                self.metrics.request(API, "ModelStreamInfer.request", request.model_name,
                                     code.name, time.monotonic() - start)
                yield pb.ModelStreamInferResponse(error_message=f"{code.name}: {message}")
                continue
            self.metrics.request(API, "ModelStreamInfer.request", request.model_name, "OK",
                                 time.monotonic() - start)
            yield pb.ModelStreamInferResponse(infer_response=resp)

    def _infer(self, request: pb.ModelInferRequest, context: grpc.ServicerContext
               ) -> pb.ModelInferResponse:
        def parse(model: StyleModel) -> np.ndarray:
            raw = request.raw_input_contents
            if len(raw) > 1:
                raise InvalidRequest("raw_input_contents must have one entry per input")
            inp = request.inputs[0] if request.inputs else pb.ModelInferRequest.InferInputTensor()
            batch = batch_of(self.plane, model, len(request.inputs), inp.name, inp.datatype,
                             inp.shape, raw[0] if raw else None, inp.contents.uint_contents)
            check_outputs(model, [out.name for out in request.outputs])
            return batch

        res = self.plane.infer(request.model_name, request.model_version, parse, API,
                               deadline_of(context), context.is_active)
        model, y = res.model, res.output
        resp = pb.ModelInferResponse(model_name=model.name, model_version=model.version,
                                     id=request.id)
        resp.outputs.add(name=model.output_name, datatype=DATATYPE, shape=list(y.shape))
        resp.raw_output_contents.append(y.tobytes())
        return resp

    # -- management (:mod:`.management`) -----------------------------------------------------
    def ModelConfig(self, request, context):
        return self.management.model_config(request)

    def ModelStatistics(self, request, context):
        return self.management.model_statistics(request)

    def RepositoryIndex(self, request, context):
        return self.management.repository_index(request)

    def RepositoryModelLoad(self, request, context):
        return self.management.load(request)

    def RepositoryModelUnload(self, request, context):
        return self.management.unload(request)
