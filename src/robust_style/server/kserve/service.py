"""KServe v2 ``inference.GRPCInferenceService`` (the protocol Triton speaks).

Each style is a model with one input ``image`` (``UINT8``, ``[-1, -1, -1, 3]``) and one
output ``stylized`` (same), as in :mod:`robust_style.contract`. Raw tensors in and out:
no decoding, no post-processing. Versions are numeric strings as in Triton (``"1"``, then
one more per reload; :mod:`robust_style.server.registry`); requests may leave the version
empty. ``ModelStreamInfer`` reports per-request errors in ``error_message`` (Triton's
convention), keeps the stream open and records each request's real latency. Model
configuration, statistics and explicit model control are in
:mod:`robust_style.server.kserve.management`; ``ServerMetadata.extensions`` lists exactly
those extensions (:data:`EXTENSIONS`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import grpc
import numpy as np

from robust_style import __version__
from robust_style.server.dataplane import DataPlane
from robust_style.server.errors import ServiceError, StyleNotFound
from robust_style.server.interceptors import deadline_of, status_of
from robust_style.server.kserve.management import KServeManagement
from robust_style.server.metrics import Metrics
from robust_style.server.protos.inference import grpc_service_pb2 as pb
from robust_style.server.protos.inference import grpc_service_pb2_grpc as pb_grpc
from robust_style.server.registry import StyleModel
from robust_style.triton_config import PLATFORM, PLATFORMS

__all__ = ["KServeService", "SERVICE_NAME", "PLATFORM", "PLATFORMS", "EXTENSIONS"]

log = logging.getLogger(__name__)

SERVICE_NAME = "inference.GRPCInferenceService"
#: Triton's names of the protocol extensions this server implements (and nothing else:
#: no shared memory, trace, logging, sequence or classification).
EXTENSIONS = ("model_repository", "model_configuration", "statistics")
API = "kserve"
_INVALID = grpc.StatusCode.INVALID_ARGUMENT


class KServeService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, plane: DataPlane, metrics: Metrics, ready: Callable[[], bool]) -> None:
        self.plane, self.registry, self.metrics, self._ready = plane, plane.registry, metrics, ready
        self.management = KServeManagement(plane)

    # -- server ---------------------------------------------------------------------------
    def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=bool(self._ready()))

    def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="robust-style", version=__version__,
                                         extensions=list(EXTENSIONS))

    # -- models ---------------------------------------------------------------------------
    def _model(self, name: str, version: str) -> StyleModel:
        return self.plane.lookup(name, version)[0]

    def ModelReady(self, request, context):
        try:
            self._model(request.name, request.version)
        except StyleNotFound:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    def ModelMetadata(self, request, context):
        m = self._model(request.name, request.version)
        shape = [-1, -1, -1, 3]
        return pb.ModelMetadataResponse(
            name=m.name, versions=[m.version], platform=PLATFORMS.get(m.engine_name, PLATFORM),
            inputs=[pb.ModelMetadataResponse.TensorMetadata(
                name=m.input_name, datatype="UINT8", shape=shape)],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(
                name=m.output_name, datatype="UINT8", shape=shape)])

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
            batch = self._input(request, model)
            for out in request.outputs:
                if out.name != model.output_name:
                    raise ServiceError(_INVALID, f"unknown output {out.name!r}; model "
                                       f"{model.name!r} has output {model.output_name!r}")
            return batch

        res = self.plane.infer(request.model_name, request.model_version, parse, API,
                               deadline_of(context), context.is_active)
        model, y = res.model, res.output
        resp = pb.ModelInferResponse(model_name=model.name, model_version=model.version,
                                     id=request.id)
        resp.outputs.add(name=model.output_name, datatype="UINT8", shape=list(y.shape))
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

    # -- translation ----------------------------------------------------------------------
    def _input(self, request: pb.ModelInferRequest, model: StyleModel) -> np.ndarray:
        if len(request.inputs) != 1:
            raise ServiceError(_INVALID, f"model {model.name!r} takes exactly one input "
                               f"({model.input_name!r}), got {len(request.inputs)}")
        inp = request.inputs[0]
        if inp.name != model.input_name:
            raise ServiceError(_INVALID, f"unknown input {inp.name!r}; model {model.name!r} "
                               f"takes {model.input_name!r}")
        if inp.datatype != "UINT8":
            raise ServiceError(_INVALID, f"input {inp.name!r} must be UINT8 (RGB 0..255), "
                               f"got {inp.datatype or 'no datatype'}")
        shape = list(inp.shape)
        if len(shape) != 4 or shape[3] != 3 or min(shape) <= 0:
            raise ServiceError(_INVALID, f"input {inp.name!r} must have shape [N, H, W, 3] "
                               f"(NHWC RGB, all > 0), got {shape}")
        n, h, w, _ = shape
        self.plane.check_batch(n, h, w)
        expected = n * h * w * 3
        if request.raw_input_contents:
            if len(request.raw_input_contents) != 1:
                raise ServiceError(_INVALID, "raw_input_contents must have one entry per input")
            raw = request.raw_input_contents[0]
            if len(raw) != expected:
                raise ServiceError(_INVALID, f"input {inp.name!r} of shape {shape} needs "
                                   f"{expected} bytes, got {len(raw)}")
            return np.frombuffer(raw, dtype=np.uint8).reshape(shape)
        values = inp.contents.uint_contents
        if len(values) != expected:
            raise ServiceError(_INVALID, f"input {inp.name!r} of shape {shape} needs {expected} "
                               f"values (raw_input_contents or contents.uint_contents), got "
                               f"{len(values)}")
        arr = np.asarray(values, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ServiceError(_INVALID, "UINT8 values must be in 0..255")
        return arr.astype(np.uint8).reshape(shape)
