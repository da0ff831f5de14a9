"""HTTP/REST front door: KServe v2 REST (with Triton's binary tensors), the image endpoint
``/v1/styles``, and the web page, on Starlette and uvicorn beside the gRPC server.

Modules: :mod:`.app` (assembly, the uvicorn thread), :mod:`.endpoint` (auth, body limit,
threads, errors and metrics of every route), :mod:`.errors` (errors -> HTTP status),
:mod:`.kserve_routes`, :mod:`.image_routes`, :mod:`.codec` (binary tensor data) and
:mod:`.protojson` (protobuf answers as Triton's JSON). The page is ``static/``.
"""

__all__: list[str] = []
