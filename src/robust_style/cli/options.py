"""Options several commands share: one definition and one help text each."""

from __future__ import annotations

import argparse

__all__ = ["add_no_progress", "show_progress"]


def add_no_progress(p: argparse.ArgumentParser) -> None:
    """``--no-progress`` (progress bars are also hidden by ``robust-style -q``)."""
    p.add_argument("--no-progress", action="store_true",
                   help="hide progress bars (also hidden by robust-style -q)")


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw progress bars: not with ``--no-progress`` nor with ``-q``."""
    return not (getattr(args, "no_progress", False) or getattr(args, "quiet", False))
