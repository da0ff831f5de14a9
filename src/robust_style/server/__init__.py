"""gRPC serving of style models with ONNX Runtime / OpenVINO (torch-free).

Rooms: :mod:`.dataplane` (what every front door does with a request: lookup, limits,
batcher, post-processing, statistics), :mod:`.style_api` (``robust_style.v1.StyleTransfer``),
:mod:`.kserve` (KServe v2 ``inference.GRPCInferenceService``), :mod:`.registry` (styles by
name, the models folder, hot reload), :mod:`.engines` (ONNX Runtime, OpenVINO, TensorRT),
:mod:`.batching` (dynamic batching), :mod:`.images` (encoding, colour), :mod:`.statistics`
(Triton-style per-model statistics), :mod:`.metrics` (Prometheus), :mod:`.errors`,
:mod:`.interceptors` (status mapping, auth), :mod:`.logs`, :mod:`.app` (assembly), and for
callers :mod:`.client` (:class:`StyleClient`) and :mod:`.local` (``stylize --model``).

Nothing here imports torch; importing this package imports nothing heavy.
"""

__all__ = ["TOKEN_ENV"]

#: Environment variable with the bearer token, read by ``serve`` and by the client commands.
TOKEN_ENV = "ROBUST_STYLE_AUTH_TOKEN"
