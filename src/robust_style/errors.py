"""Errors a person can act on.

:class:`UserError` is raised for bad input (a missing file, a wrong option, a corrupt
checkpoint). The CLI prints its message as one line and exits non-zero; library
callers catch it like any exception. Torch-free, so the serving path can use it.
"""

from __future__ import annotations

__all__ = ["UserError", "first_line"]


class UserError(Exception):
    """An error caused by the user's input, with a message that says what to fix."""


def first_line(exc: BaseException | str, limit: int = 200) -> str:
    """The first non-empty line of an exception's message (or of a string), at most ``limit``
    characters; the exception's type name when the message is empty (never an IndexError)."""
    text = exc if isinstance(exc, str) else str(exc)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if not line and not isinstance(exc, str):
        line = type(exc).__name__
    return line[:limit]
