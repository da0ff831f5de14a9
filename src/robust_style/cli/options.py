"""Options several commands share: one definition and one help text each."""

from __future__ import annotations

import argparse

__all__ = ["add_command_group", "add_no_progress", "add_trust_checkpoint", "show_progress"]


def add_command_group(subparsers: argparse._SubParsersAction, name: str, *, help: str,
                      description: str, dest: str, metavar: str = "ACTION",
                      ) -> argparse._SubParsersAction:
    """A command with sub-commands (``analyze``, ``backbone``, ``weights``); bare, it prints
    its help and exits 2, as a usage error does."""
    group = subparsers.add_parser(name, help=help, description=description)
    sub = group.add_subparsers(dest=dest, metavar=metavar)

    def _usage(_args: argparse.Namespace) -> int:
        group.print_help()
        return 2

    group.set_defaults(handler=_usage)
    return sub


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
