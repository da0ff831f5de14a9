"""Errors a person can act on.

:class:`UserError` is raised for bad input (a missing file, a wrong option, a corrupt
checkpoint). The CLI prints its message as one line and exits non-zero; library
callers catch it like any exception. Torch-free, so the serving path can use it.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """An error caused by the user's input, with a message that says what to fix."""
