"""Errors of the serving path a caller can act on; :mod:`.interceptors` maps them to statuses."""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from robust_style.errors import UserError

__all__ = ["StyleNotFound", "InvalidRequest", "TooManyImages", "ServiceError"]


class StyleNotFound(UserError, KeyError):
    """No such style (or version); the message lists the names there are.

    Also a ``KeyError``, what the registry raised before, so ``except KeyError`` still works.
    """

    def __init__(self, what: str, available: Iterable[str], label: str = "available",
                 none: str = "none") -> None:
        names = ", ".join(available) or none
        super().__init__(f"{what}; {label}: {names}")
        self.message = f"{what}; {label}: {names}"

    def __str__(self) -> str:  # KeyError would quote it
        return self.message

    @classmethod
    def style(cls, name: str, available: Iterable[str]) -> StyleNotFound:
        """The answer to a request for style ``name`` (``""``: none was given)."""
        what = f"unknown style {name!r}" if name else "no style given"
        return cls(what, available, none="none loaded")


class InvalidRequest(UserError):
    """A request the data plane cannot run as given (a bad option, shape or value)."""


class TooManyImages(UserError):
    """More images in one request than the limit allows."""


class ServiceError(Exception):
    """An error with the gRPC status it should be answered with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message
