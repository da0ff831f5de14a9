"""Errors -> HTTP status codes: the HTTP mirror of :func:`robust_style.server.interceptors.status_of`.

The one place an exception becomes an HTTP answer: status and one-line message, answered as
Triton's HTTP API does (``{"error": "..."}``). The message is the one gRPC gives
(:func:`status_of`, which also logs unexpected errors with their traceback); the status
follows Triton's HTTP server (``HttpCodeFromError``: not found 404, invalid argument 400,
unavailable 503, internal 500) with 413 for a request over the size limits (the image's
pixels, the images per request, the body's bytes) and 503 for a full queue (Triton's
``UNAVAILABLE``, "exceeds maximum queue size").
"""

from __future__ import annotations

import grpc

from robust_style.imageio import ImageTooLarge
from robust_style.server.batching import QueueFull
from robust_style.server.errors import TooManyImages
from robust_style.server.interceptors import status_of

__all__ = ["HTTPError", "http_status_of"]

_S = grpc.StatusCode
#: Errors whose HTTP status is not the one of their gRPC code (first match wins).
_BY_TYPE: tuple[tuple[type[BaseException], int], ...] = (
    (ImageTooLarge, 413), (TooManyImages, 413), (QueueFull, 503))
#: gRPC code -> HTTP status, as Triton maps its error codes.
_BY_CODE = {_S.INVALID_ARGUMENT: 400, _S.NOT_FOUND: 404, _S.RESOURCE_EXHAUSTED: 413,
            _S.DEADLINE_EXCEEDED: 504, _S.UNAVAILABLE: 503, _S.UNAUTHENTICATED: 401,
            _S.PERMISSION_DENIED: 403, _S.UNIMPLEMENTED: 501, _S.CANCELLED: 400,
            _S.FAILED_PRECONDITION: 400, _S.INTERNAL: 500}


class HTTPError(Exception):
    """An error with the HTTP status it is answered with (auth, body limits, parsing)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def http_status_of(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and one-line message ``exc`` is answered with."""
    if isinstance(exc, HTTPError):
        return exc.status, exc.message
    code, message = status_of(exc)
    for kind, status in _BY_TYPE:
        if isinstance(exc, kind):
            return status, message
    return _BY_CODE.get(code, 500), message
