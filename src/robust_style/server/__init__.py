"""gRPC serving of style models with ONNX Runtime (torch-free).

Modules: :mod:`.images` (encode, colour; decoding is :mod:`robust_style.imageio`), :mod:`.models` (model registry,
providers, hot reload), :mod:`.batching` (dynamic batching), :mod:`.service_style`
(``robust_style.v1.StyleTransfer``), :mod:`.service_kserve` (KServe v2
``inference.GRPCInferenceService``), :mod:`.metrics` (Prometheus), :mod:`.app` (assembly,
health, reflection, auth, signals) and :mod:`.client` (:class:`StyleClient`).

Nothing here imports torch; importing this package imports nothing heavy.
"""

__all__ = ["TOKEN_ENV"]

#: Environment variable with the bearer token, read by ``serve`` and by the client commands.
TOKEN_ENV = "ROBUST_STYLE_AUTH_TOKEN"
