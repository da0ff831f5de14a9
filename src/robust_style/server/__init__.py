"""gRPC serving of style models with ONNX Runtime (torch-free).

Modules: :mod:`.images` (decode, encode, colour), :mod:`.models` (model registry,
providers, hot reload), :mod:`.batching` (dynamic batching), :mod:`.service_style`
(``robust_style.v1.StyleTransfer``), :mod:`.service_kserve` (KServe v2
``inference.GRPCInferenceService``), :mod:`.metrics` (Prometheus), :mod:`.app` (assembly,
health, reflection, auth, signals) and :mod:`.client` (:class:`StyleClient`).

Nothing here imports torch; importing this package imports nothing heavy.
"""

__all__: list[str] = []
