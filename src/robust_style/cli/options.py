"""Options several commands share: one definition and one help text each."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_command_group", "add_device", "add_no_progress", "add_run_options",
           "add_trust_checkpoint", "show_progress", "torch_device"]


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


def add_run_options(p: argparse.ArgumentParser, *, content: str, checkpoint_every: int,
                    sample_every: int, sample: str, sample_image: str) -> None:
    """What every command that writes a training run folder takes (``train``, ``adapt``,
    ``distill``): the photos, the folder, ``--resume``, the time limit and what the run
    writes when, ``--no-progress``. ``None`` defaults: an option left out keeps the resumed run's value."""
    p.add_argument("--content", metavar="DIR", help=content)
    p.add_argument("--out", metavar="RUN_DIR", required=True, help="run folder to write")
    p.add_argument("--resume", action="store_true", default=False,
                   help="continue the run in --out from its newest checkpoint")
    p.add_argument("--max-minutes", type=float, metavar="M",
                   help="also stop (saving the model) after M minutes of training; checked "
                   "every --log-interval steps")
    p.add_argument("--checkpoint-interval", type=int, metavar="N",
                   help=f"write a checkpoint every N steps (default {checkpoint_every})")
    p.add_argument("--sample-interval", type=int, metavar="N",
                   help=f"write {sample} every N steps (default {sample_every}; 0: off)")
    p.add_argument("--log-interval", type=int, metavar="N", help="log.csv row every N steps (10)")
    p.add_argument("--keep-checkpoints", type=int, metavar="K", help="checkpoints kept (3)")
    p.add_argument("--sample-image", metavar="IMAGE", help=sample_image)
    add_no_progress(p)


def add_device(p: argparse.ArgumentParser, what: str = "torch device") -> None:
    """``--device``, with one default everywhere: ``auto``, CUDA when present, else CPU."""
    p.add_argument("--device", default=None, metavar="DEVICE",
                   help=f"{what}: auto (default: CUDA when present, else CPU), cpu, cuda, cuda:N")


def torch_device(text: str | None) -> Any:
    """``--device`` as a ``torch.device`` (``None``: ``auto``); a bad one is one line."""
    from robust_style.transformer_net.runtime import select_device

    return select_device(text or "auto")
