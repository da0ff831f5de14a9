"""The server's interceptors: errors -> gRPC status codes with metrics, and bearer-token auth.

:class:`StatusInterceptor` (built on the maintained
``grpc-interceptor`` package), wraps every RPC of both APIs: handlers just raise.
Expected errors become a status with a message the caller can act on; anything unexpected
is logged with its traceback on the server and answered ``INTERNAL`` with a one-line
message, never a stack trace. Every RPC, failed or not, is counted and timed
(``robust_style_requests_total`` and ``robust_style_request_latency_seconds``).
:func:`status_of` is the one place an error becomes a status. :class:`AuthInterceptor`
checks the bearer token.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import grpc
from grpc_interceptor import ServerInterceptor

from robust_style.imageio import ImageError, ImageTooLarge
from robust_style.server.batching import DeadlineExpired, QueueFull, StyleRemoved
from robust_style.server.errors import (
    InvalidRequest,
    ServiceError,
    StyleNotFound,
    TooManyImages,
)
from robust_style.server.memory import MemoryTooSmall
from robust_style.server.metrics import Metrics

__all__ = ["status_of", "deadline_of", "StatusInterceptor", "AuthInterceptor", "APIS",
           "HEALTH_NAME"]

log = logging.getLogger(__name__)

HEALTH_NAME = "grpc.health.v1.Health"

#: gRPC service name -> the ``api`` label of its metrics. RPCs of other services (health,
#: reflection) pass through the interceptor untouched.
APIS = {"robust_style.v1.StyleTransfer": "style", "inference.GRPCInferenceService": "kserve"}
#: Request fields naming the style (StylizeRequest.style, ModelInferRequest.model_name,
#: ModelMetadataRequest.name ...), used as the ``style`` label of unary RPCs.
_STYLE_FIELDS = ("style", "model_name", "name")
_S = grpc.StatusCode
#: Expected errors and their status, first match wins (ImageTooLarge is an ImageError).
_STATUSES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (StyleNotFound, _S.NOT_FOUND), (InvalidRequest, _S.INVALID_ARGUMENT),
    (TooManyImages, _S.RESOURCE_EXHAUSTED), (ImageTooLarge, _S.RESOURCE_EXHAUSTED),
    (ImageError, _S.INVALID_ARGUMENT), (StyleRemoved, _S.NOT_FOUND),
    (QueueFull, _S.RESOURCE_EXHAUSTED), (DeadlineExpired, _S.DEADLINE_EXCEEDED),
    (MemoryTooSmall, _S.RESOURCE_EXHAUSTED))


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status and one-line message ``exc`` is answered with (INTERNAL is logged)."""
    if isinstance(exc, ServiceError):
        return exc.code, exc.message
    for kind, code in _STATUSES:
        if isinstance(exc, kind):
            return code, str(exc)
    log.error("internal error", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal server error ({type(exc).__name__}); see the server log"


def deadline_of(context: grpc.ServicerContext) -> float | None:
    """The client's deadline as ``time.monotonic()`` time, or None."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e8:
        return None
    return time.monotonic() + remaining


def _style_of(request: Any) -> str:
    descriptor = getattr(request, "DESCRIPTOR", None)
    if descriptor is None:  # a request stream: no single style
        return ""
    for name in _STYLE_FIELDS:
        if name in descriptor.fields_by_name:
            return str(getattr(request, name))
    return ""


class StatusInterceptor(ServerInterceptor):
    """Errors -> status codes (:func:`status_of`) and metrics, for every RPC of both APIs.

    Unary RPCs are timed to their answer, streaming ones to their last message; a stream
    the client cancels is recorded as ``CANCELLED``. A handler (or an inner interceptor,
    e.g. bearer-token auth) that already called ``context.abort`` keeps its status.
    """

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def intercept(self, method: Callable[[Any, grpc.ServicerContext], Any],
                  request_or_iterator: Any, context: grpc.ServicerContext,
                  method_name: str) -> Any:
        service, _, rpc = method_name.lstrip("/").partition("/")
        api = APIS.get(service)
        if api is None:
            return method(request_or_iterator, context)
        labels = (api, rpc, _style_of(request_or_iterator))
        start = time.monotonic()
        try:
            result = method(request_or_iterator, context)
        except Exception as exc:
            self._abort(exc, context, labels, start)
        if isinstance(result, Iterator):
            return self._stream(result, context, labels, start)
        self._record(labels, "OK", start)
        return result

    def _stream(self, responses: Iterator[Any], context: grpc.ServicerContext,
                labels: tuple[str, str, str], start: float) -> Iterator[Any]:
        try:
            yield from responses
        except GeneratorExit:  # the client cancelled or went away
            self._record(labels, grpc.StatusCode.CANCELLED.name, start)
            raise
        except Exception as exc:
            self._abort(exc, context, labels, start)
        self._record(labels, "OK", start)

    def _record(self, labels: tuple[str, str, str], code: str, start: float) -> None:
        api, rpc, style = labels
        self.metrics.request(api, rpc, style, code, time.monotonic() - start)

    def _abort(self, exc: Exception, context: grpc.ServicerContext,
               labels: tuple[str, str, str], start: float) -> NoReturn:
        already = context.code()
        if already is not None and already != grpc.StatusCode.OK:  # context.abort was called
            self._record(labels, already.name, start)
            raise exc
        code, message = status_of(exc)
        self._record(labels, code.name, start)
        log.info("%s %s style=%r -> %s: %s", *labels, code.name, message)
        context.abort(code, message)
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


class AuthInterceptor(grpc.ServerInterceptor):
    """``authorization: Bearer TOKEN`` on every RPC except health checks (for probes).

    Compared with :func:`hmac.compare_digest` (constant time).
    """

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        def deny(request: object, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "missing or wrong bearer token (metadata 'authorization: Bearer ...')")

        self._deny = deny

    def intercept_service(self, continuation, details):
        if details.method.startswith(f"/{HEALTH_NAME}/"):
            return continuation(details)
        given = next((v for k, v in details.invocation_metadata if k == "authorization"), "")
        given_b = given.encode() if isinstance(given, str) else bytes(given)
        if hmac.compare_digest(given_b, self._expected):
            return continuation(details)
        handler = continuation(details)
        if handler is None:
            return None
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(lambda it, ctx: self._deny(None, ctx))
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(self._deny)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(lambda r, ctx: self._deny(r, ctx))
        return grpc.unary_unary_rpc_method_handler(self._deny)
