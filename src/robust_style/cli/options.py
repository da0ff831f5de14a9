"""Options several commands share: one definition and one help text each."""

from __future__ import annotations

import argparse

__all__ = ["add_no_progress", "add_trust_checkpoint", "show_progress"]


def add_no_progress(p: argparse.ArgumentParser) -> None:
    """``--no-progress`` (progress bars are also hidden by ``robust-style -q``)."""
    p.add_argument("--no-progress", action="store_true",
                   help="hide progress bars (also hidden by robust-style -q)")


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw progress bars: not with ``--no-progress`` nor with ``-q``."""
    return not (getattr(args, "no_progress", False) or getattr(args, "quiet", False))


def add_trust_checkpoint(p: argparse.ArgumentParser, what: str = "the checkpoints",
                         default: bool | None = False) -> None:
    """``--trust-checkpoint``: the one help text, naming ``what`` it applies to."""
    p.add_argument("--trust-checkpoint", action="store_true", default=default,
                   help=f"allow full unpickling of {what} (runs code in the files: only for "
                        "files from a source you trust)")
