"""What every HTTP route shares: auth, the body limit, threads, errors and metrics.

The HTTP counterpart of the gRPC interceptors (:mod:`robust_style.server.interceptors`):
a route is a plain blocking function ``handler(call) -> Response`` that just raises;
:meth:`Endpoints.wrap` turns it into a Starlette endpoint that checks the bearer token,
reads the body (at most the gRPC message limit, else 413), runs the handler on the
server's worker threads (the data plane blocks while the batcher works; the event loop
does not), answers errors with :func:`~.errors.http_status_of` as ``{"error": "..."}``, and
counts and times every request in the Prometheus metrics (``api="http"``, ``code`` the
HTTP status).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass

from starlette.datastructures import Headers, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from robust_style.server.metrics import Metrics
from robust_style.server.rest.errors import HTTPError, http_status_of

__all__ = ["Call", "Endpoints", "API"]

log = logging.getLogger(__name__)

API = "http"
#: The form field of an uploaded image (``curl -F image=@photo.jpg``).
IMAGE_FIELD = "image"


@dataclass(frozen=True)
class Call:
    """One HTTP request as a handler sees it: path parameters, query, headers, body."""

    path: Mapping[str, str]
    query: Mapping[str, str]
    headers: Headers
    body: bytes


class Endpoints:
    """Builds the endpoints of the routes (:meth:`wrap`)."""

    def __init__(self, metrics: Metrics, executor: Executor, auth_token: str | None,
                 max_body_bytes: int) -> None:
        self.metrics, self.executor, self.max_body = metrics, executor, max_body_bytes
        self._expected = f"Bearer {auth_token}".encode() if auth_token else None

    def wrap(self, name: str, handler: Callable[[Call], Response], *, public: bool = False,
             image: bool = False) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint of ``handler`` (``name`` in the metrics). ``public``: no token needed
        (health probes, the web page); ``image``: the body may be a multipart form whose
        ``image`` field is the body the handler gets."""

        async def endpoint(request: Request) -> Response:
            start = time.monotonic()
            style = request.path_params.get("model") or request.path_params.get("name", "")
            try:
                if not public:
                    self._authorize(request)
                body = await (self._image(request) if image else self._body(request))
                call = Call(request.path_params, request.query_params, request.headers, body)
                loop = asyncio.get_running_loop()
                response = await loop.run_in_executor(self.executor, handler, call)
            except Exception as exc:
                status, message = http_status_of(exc)
                log.info("HTTP %s %s -> %d: %s", request.method, request.url.path, status,
                         message)
                response = JSONResponse({"error": message}, status)
            self.metrics.request(API, name, style, str(response.status_code),
                                 time.monotonic() - start)
            return response

        return endpoint

    def _authorize(self, request: Request) -> None:
        if self._expected is None:
            return
        given = request.headers.get("authorization")
        if given is None:
            raise HTTPError(401, "missing bearer token (header 'Authorization: Bearer ...')")
        if not hmac.compare_digest(given.encode(), self._expected):
            raise HTTPError(403, "wrong bearer token (header 'Authorization: Bearer ...')")

    def _too_large(self, size: int | str) -> HTTPError:
        return HTTPError(413, f"request body of {size} bytes is over the limit of "
                         f"{self.max_body} bytes (serve --max-message-mb)")

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise self._too_large(declared)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large(f"more than {self.max_body}")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _image(self, request: Request) -> bytes:
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return await self._body(request)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise self._too_large(declared)
        try:
            form = await request.form(max_files=1, max_fields=16)
        except Exception as exc:  # python-multipart's and starlette's parse errors
            raise HTTPError(400, f"cannot parse the multipart form: {exc}") from None
        try:
            part = form.get(IMAGE_FIELD)
            if part is None:
                raise HTTPError(400, f"the form has no {IMAGE_FIELD!r} field (curl -F "
                                f"{IMAGE_FIELD}=@photo.jpg); fields: {', '.join(form) or 'none'}")
            if isinstance(part, UploadFile):
                return await part.read()
            return part.encode()
        finally:
            await form.close()
