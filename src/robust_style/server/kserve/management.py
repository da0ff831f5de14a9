"""KServe v2 / Triton extensions: model configuration, statistics, explicit model control.

* ``ModelConfig`` (Triton's "model_configuration" extension): the configuration
  :func:`robust_style.triton_config.model_config` builds, the same function
  ``robust-style export --triton-repo`` writes ``config.pbtxt`` with. What the server
  knows goes in: ``max_batch_size`` is the per-request image limit, ``dynamic_batching``
  its batch window and preferred (maximum) batch, ``instance_group`` CPU or GPU, and
  ``parameters`` the file, its sha256 and the engine (name, precision, devices, note);
  ``platform``/``backend`` name the engine as ``ModelMetadata`` does.
* ``ModelStatistics`` ("statistics"): :mod:`robust_style.server.statistics`, per model
  version; every loaded model when no name is given.
* ``RepositoryIndex``/``RepositoryModelLoad``/``RepositoryModelUnload``
  ("model_repository"): the models folder is the one repository (``repository_name`` is
  ignored); see :mod:`robust_style.server.registry.repository`. Load parameters (Triton's config
  override and ``file:`` uploads) are refused with INVALID_ARGUMENT.

Unknown models and versions are NOT_FOUND with the available names (Triton answers some of
these INVALID_ARGUMENT or INTERNAL, an unknown unload OK; docs/serving.md compares); a load
that fails is INVALID_ARGUMENT with the reason, as in Triton, and the styles already served
keep serving.
"""

from __future__ import annotations

import grpc

from robust_style import __version__
from robust_style.server.dataplane import DataPlane
from robust_style.server.errors import ServiceError, StyleNotFound
from robust_style.server.kserve.tensors import DATATYPE, SHAPE
from robust_style.server.protos.inference import grpc_service_pb2 as pb
from robust_style.server.registry import StyleModel
from robust_style.server.registry.repository import LoadError
from robust_style.triton_config import PLATFORM, PLATFORMS, model_config

__all__ = ["KServeManagement", "EXTENSIONS"]

#: Triton's names of the protocol extensions this server implements (and nothing else:
#: no shared memory, trace, logging, sequence or classification); the HTTP front door adds
#: ``binary_tensor_data``.
EXTENSIONS = ("model_repository", "model_configuration", "statistics")

_STAT_FIELDS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


class KServeManagement:
    """The management RPCs of :class:`~robust_style.server.kserve.service.KServeService`."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane, self.registry, self.limits = plane, plane.registry, plane.limits

    def _model(self, name: str, version: str) -> StyleModel:
        return self.plane.lookup(name, version)[0]

    # -- metadata -------------------------------------------------------------------------
    def server_metadata(self, extensions: tuple[str, ...] = EXTENSIONS
                        ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="robust-style", version=__version__,
                                         extensions=list(extensions))

    def model_ready(self, name: str, version: str) -> bool:
        try:
            self._model(name, version)
        except StyleNotFound:
            return False
        return True

    def model_metadata(self, name: str, version: str) -> pb.ModelMetadataResponse:
        m = self._model(name, version)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=m.name, versions=[m.version], platform=PLATFORMS.get(m.engine_name, PLATFORM),
            inputs=[tensor(name=m.input_name, datatype=DATATYPE, shape=SHAPE)],
            outputs=[tensor(name=m.output_name, datatype=DATATYPE, shape=SHAPE)])

    # -- configuration and statistics -----------------------------------------------------
    def model_config(self, request: pb.ModelConfigRequest) -> pb.ModelConfigResponse:
        m = self._model(request.name, request.version)
        batch = self.registry.batch_config
        params = {"file": m.file, "sha256": m.sha256, "version": m.version,
                  **{k: v for k, v in m.engine_info().items() if v}}
        cfg = model_config(m.name, max_batch_size=self.limits.max_batch_per_request,
                           max_queue_delay_us=int(batch.max_delay_ms * 1000),
                           preferred_batch_size=batch.max_batch,
                           input_name=m.input_name, output_name=m.output_name,
                           instance_kind="gpu" if self.registry.on_gpu else "cpu",
                           parameters=params, backend=m.engine_name)
        return pb.ModelConfigResponse(config=cfg)

    def model_statistics(self, request: pb.ModelStatisticsRequest
                         ) -> pb.ModelStatisticsResponse:
        if request.name:
            models = [self._model(request.name, request.version)]
        else:
            models = [m for m in self.registry.styles()
                      if not request.version or m.version == request.version]
        out = pb.ModelStatisticsResponse()
        for m in models:
            s = m.stats.snapshot()
            ms = out.model_stats.add(name=m.name, version=m.version,
                                     last_inference=s.last_inference_ms,
                                     inference_count=s.inference_count,
                                     execution_count=s.execution_count)
            for name in _STAT_FIELDS:
                d = getattr(s, name)
                getattr(ms.inference_stats, name).MergeFrom(
                    pb.StatisticDuration(count=d.count, ns=d.ns))
            for size, (inp, infer, outp) in sorted(s.batches.items()):
                bs = ms.batch_stats.add(batch_size=size)
                for target, d in ((bs.compute_input, inp), (bs.compute_infer, infer),
                                  (bs.compute_output, outp)):
                    target.count, target.ns = d.count, d.ns
        return out

    # -- explicit model control -----------------------------------------------------------
    def repository_index(self, request: pb.RepositoryIndexRequest
                         ) -> pb.RepositoryIndexResponse:
        out = pb.RepositoryIndexResponse()
        for m in self.registry.index(ready_only=request.ready):
            out.models.add(name=m.name, version=m.version, state=m.state, reason=m.reason)
        return out

    def load(self, request: pb.RepositoryModelLoadRequest) -> pb.RepositoryModelLoadResponse:
        if request.parameters:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"load parameters ({', '.join(sorted(request.parameters))}) are "
                               "not supported: put the .onnx file in the models folder and "
                               "load it by its style name")
        try:
            self.registry.load(request.model_name)
        except LoadError as exc:
            raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT,  # as Triton answers it
                               f"load failed for model {request.model_name!r}: {exc}") from None
        return pb.RepositoryModelLoadResponse()

    def unload(self, request: pb.RepositoryModelUnloadRequest
               ) -> pb.RepositoryModelUnloadResponse:
        self.registry.unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()
