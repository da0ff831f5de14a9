"""KServe v2 HTTP/REST (the protocol Triton serves on port 8000), with binary tensors.

Every route is a thin translation onto what the gRPC servicer uses: the data plane's
``infer`` with :func:`robust_style.server.kserve.tensors.batch_of`, and the protobuf answers
of :class:`~robust_style.server.kserve.management.KServeManagement` written as Triton's JSON
(:mod:`.protojson`). Paths and bodies as in the KServe v2 REST spec and Triton's
extensions (``docs/protocol/extension_*.md``); binary tensors in :mod:`.codec`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from robust_style.server.dataplane import DataPlane
from robust_style.server.errors import InvalidRequest
from robust_style.server.kserve.management import EXTENSIONS, KServeManagement
from robust_style.server.kserve.tensors import DATATYPE, batch_of, check_outputs
from robust_style.server.protos.inference import grpc_service_pb2 as pb
from robust_style.server.registry import StyleModel
from robust_style.server.rest import codec
from robust_style.server.rest.endpoint import Call, Endpoints
from robust_style.server.rest.errors import HTTPError
from robust_style.server.rest.protojson import to_json

__all__ = ["KServeRoutes", "HTTP_EXTENSIONS", "DOOR"]

#: What ``GET /v2`` lists: the gRPC extensions and the binary tensor data one.
HTTP_EXTENSIONS = (*EXTENSIONS, "binary_tensor_data")
#: The data plane's name of this front door (``DataPlane.served``).
DOOR = "kserve-http"


def _json_body(call: Call) -> dict[str, Any]:
    if not call.body.strip():
        return {}
    try:
        obj = json.loads(call.body)
    except ValueError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return obj


class KServeRoutes:
    def __init__(self, plane: DataPlane, management: KServeManagement,
                 ready: Callable[[], bool]) -> None:
        self.plane, self.management, self._ready = plane, management, ready

    def routes(self, ep: Endpoints) -> list[Route]:
        """The routes, in match order (``/v2/models/stats`` before ``/v2/models/{model}``)."""
        m, v = "/v2/models/{model}", "/v2/models/{model}/versions/{version}"
        table: list[tuple[str, str, Callable[[Call], Response], str, bool]] = [
            ("/v2/health/live", "GET", self.live, "ServerLive", True),
            ("/v2/health/ready", "GET", self.ready, "ServerReady", True),
            ("/v2", "GET", self.server_metadata, "ServerMetadata", False),
            ("/v2/models/stats", "GET", self.statistics, "ModelStatistics", False),
            ("/v2/repository/index", "POST", self.repository_index, "RepositoryIndex", False),
            ("/v2/repository/models/{model}/load", "POST", self.load, "RepositoryModelLoad",
             False),
            ("/v2/repository/models/{model}/unload", "POST", self.unload,
             "RepositoryModelUnload", False),
        ]
        for base in (m, v):
            table += [
                (base, "GET", self.model_metadata, "ModelMetadata", False),
                (f"{base}/ready", "GET", self.model_ready, "ModelReady", False),
                (f"{base}/config", "GET", self.model_config, "ModelConfig", False),
                (f"{base}/stats", "GET", self.statistics, "ModelStatistics", False),
                (f"{base}/infer", "POST", self.infer, "ModelInfer", False),
            ]
        return [Route(path, ep.wrap(name, fn, public=public), methods=[method])
                for path, method, fn, name, public in table]

    # -- health and metadata --------------------------------------------------------------
    def live(self, call: Call) -> Response:
        return JSONResponse({"live": True})

    def ready(self, call: Call) -> Response:
        if not self._ready():
            raise HTTPError(503, "not ready: no style model is loaded and warmed up yet")
        return JSONResponse({"ready": True})

    def server_metadata(self, call: Call) -> Response:
        return JSONResponse(to_json(self.management.server_metadata(HTTP_EXTENSIONS)))

    def model_ready(self, call: Call) -> Response:
        self.plane.lookup(call.path["model"], call.path.get("version", ""))  # 404 if not
        return JSONResponse({"name": call.path["model"], "ready": True})

    def model_metadata(self, call: Call) -> Response:
        return JSONResponse(to_json(self.management.model_metadata(
            call.path["model"], call.path.get("version", ""))))

    def model_config(self, call: Call) -> Response:
        req = pb.ModelConfigRequest(name=call.path["model"], version=call.path.get("version", ""))
        return JSONResponse(to_json(self.management.model_config(req).config))

    def statistics(self, call: Call) -> Response:
        req = pb.ModelStatisticsRequest(name=call.path.get("model", ""),
                                        version=call.path.get("version", ""))
        return JSONResponse(to_json(self.management.model_statistics(req)))

    # -- repository -----------------------------------------------------------------------
    def repository_index(self, call: Call) -> Response:
        ready = bool(_json_body(call).get("ready", False))
        index = self.management.repository_index(pb.RepositoryIndexRequest(ready=ready))
        return JSONResponse([to_json(m) for m in index.models])

    def load(self, call: Call) -> Response:
        req = pb.RepositoryModelLoadRequest(model_name=call.path["model"])
        params = _json_body(call).get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidRequest("'parameters' must be a JSON object")
        for key, value in params.items():
            req.parameters[str(key)].string_param = str(value)
        self.management.load(req)
        return Response(status_code=200)

    def unload(self, call: Call) -> Response:
        self.management.unload(pb.RepositoryModelUnloadRequest(model_name=call.path["model"]))
        return Response(status_code=200)

    # -- inference ------------------------------------------------------------------------
    def infer(self, call: Call) -> Response:
        body = codec.parse_request(call.body, call.headers.get(codec.HEADER_LENGTH))
        inputs, header = body.inputs, body.header
        outputs = header.get("outputs") or []
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            raise InvalidRequest("'outputs' must be a list of objects with a 'name'")

        def parse(model: StyleModel) -> np.ndarray:
            first = inputs[0] if inputs else {}
            batch = batch_of(self.plane, model, len(inputs), str(first.get("name", "")),
                             str(first.get("datatype", "")), first.get("shape") or [],
                             body.binary[0] if inputs else None, first.get("data"))
            check_outputs(model, [str(o.get("name", "")) for o in outputs])
            return batch

        res = self.plane.infer(call.path["model"], call.path.get("version", ""), parse, DOOR)
        model, y = res.model, res.output
        out: dict[str, Any] = {"name": model.output_name, "datatype": DATATYPE,
                               "shape": list(y.shape)}
        blobs: list[bytes | memoryview] = []
        if codec.binary_outputs(header, [model.output_name])[0]:
            out["parameters"] = {"binary_data_size": y.nbytes}
            blobs.append(y.data.cast("B"))  # y.data is memoryview(y)
        else:
            out["data"] = y.ravel().tolist()
        answer: dict[str, Any] = {"model_name": model.name, "model_version": model.version,
                                  "outputs": [out]}
        if "id" in header:
            answer["id"] = header["id"]
        data, length = codec.encode_response(answer, blobs)
        if length is None:
            return Response(data, media_type="application/json")
        return Response(data, media_type="application/octet-stream",
                        headers={codec.HEADER_LENGTH: str(length)})
