"""What both APIs share: errors -> gRPC status codes, metrics and logging around each RPC.

Every handler runs inside :func:`guard`: expected errors become a status with a message
the caller can act on; anything unexpected is logged with its traceback on the server and
answered ``INTERNAL`` with a one-line message, never a stack trace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import grpc

from robust_style.server.batching import DeadlineExpired, QueueFull, StyleRemoved
from robust_style.server.images import ImageError, ImageTooLarge
from robust_style.server.metrics import Metrics

__all__ = ["ServiceError", "Limits", "status_of", "guard", "guard_stream", "deadline_of"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    """Request limits: pixels per image (checked before decoding) and images per request."""

    max_pixels: int = 40_000_000
    max_batch_per_request: int = 64


class ServiceError(Exception):
    """An error with the gRPC status it should be answered with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, ServiceError):
        return exc.code, exc.message
    if isinstance(exc, ImageTooLarge):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, ImageError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, StyleRemoved):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, QueueFull):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, DeadlineExpired):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(exc)
    log.error("internal error", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal server error ({type(exc).__name__}); see the server log"


def deadline_of(context: grpc.ServicerContext) -> float | None:
    """The client's deadline as ``time.monotonic()`` time, or None."""
    remaining = context.time_remaining()
    if remaining is None or remaining > 1e8:
        return None
    return time.monotonic() + remaining


def guard(metrics: Metrics, api: str, method: str, style: str,
          context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
    """Run ``fn``; record the outcome; turn errors into a status (``context.abort``)."""
    start = time.monotonic()
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - every error becomes a status
        code, message = status_of(exc)
        metrics.request(api, method, style, code.name, time.monotonic() - start)
        log.info("%s %s style=%r -> %s: %s", api, method, style, code.name, message)
        context.abort(code, message)
    metrics.request(api, method, style, "OK", time.monotonic() - start)
    return result


def guard_stream(metrics: Metrics, api: str, method: str, context: grpc.ServicerContext,
                 gen: Iterator[T]) -> Iterator[T]:
    """:func:`guard` for a response stream: an error ends the stream with its status."""
    start = time.monotonic()
    try:
        yield from gen
    except Exception as exc:  # noqa: BLE001 - every error becomes a status
        code, message = status_of(exc)
        metrics.request(api, method, "", code.name, time.monotonic() - start)
        log.info("%s %s -> %s: %s", api, method, code.name, message)
        context.abort(code, message)
    metrics.request(api, method, "", "OK", time.monotonic() - start)
