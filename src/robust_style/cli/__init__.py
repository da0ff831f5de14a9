"""The ``robust-style`` command line.

Each subcommand lives in its own module ``robust_style.cli.cmd_<name>`` exposing
``register(subparsers) -> None``; the parser discovers them, so adding a command never
touches this file. Command modules import heavy libraries (torch, onnxruntime) inside
their handlers only, so ``--help`` is fast and ``serve`` never imports torch.

Where each command's work lives (the command module only parses and reports):

==============================  ===================================================
``train``, ``adapt``            :mod:`robust_style.transformer_net.train`
``distill``                     :mod:`robust_style.transformer_net.distill`
``export``                      :mod:`robust_style.export.pipeline`
``serve``, ``styles``, ``demo`` :mod:`robust_style.server` (``app``, ``client``)
``stylize``                     :mod:`robust_style.server.local` (or a server's client)
``evaluate``                    :mod:`robust_style.evaluate`
``tune``                        :mod:`robust_style.evaluate.tune` (runs judged by evaluate)
``optimize``                    :mod:`robust_style.analysis.optimize` (Gatys et al.)
``analyze``                     :mod:`robust_style.analysis` (robustness metrics)
``backbone``                    :mod:`robust_style.analysis.backbone_train`
``weights``                     :mod:`robust_style.perceptual.weights`
==============================  ===================================================

A handler returns an exit code. :class:`~robust_style.errors.UserError` becomes one line
on stderr and exit code 2; Ctrl-C exits 130.

The base install (``pip install robust-style``) is the serving side only: ``serve``,
``styles``, ``stylize`` and ``demo`` never import torch or onnx. The other commands need an
extra; when its packages are missing, the ``ModuleNotFoundError`` is turned into one line
naming the extra to install (exit 2), here and only here (:data:`EXTRA_OF_MODULE`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from robust_style import __version__
from robust_style.errors import UserError

__all__ = ["EXTRA_OF_MODULE", "build_parser", "main", "missing_extra_message"]

log = logging.getLogger("robust_style")

#: Top-level module -> the extra of pyproject.toml that installs it.
EXTRA_OF_MODULE: dict[str, str] = {
    "torch": "train", "torchvision": "train", "onnxscript": "train",
    "onnxconverter_common": "train", "lpips": "train", "h5py": "train",
    "cv2": "train",
    "robustness": "robustness", "cox": "robustness", "matplotlib": "plots",
}


def missing_extra_message(exc: ModuleNotFoundError, command: str | None) -> str:
    """One line for a command whose optional dependencies are not installed."""
    top = (exc.name or "").split(".")[0]
    what = f"`robust-style {command}`" if command else "this command"
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return (f"{what} cannot import {exc.name or 'a module'} ({exc}); the installation "
                "looks incomplete: reinstall robust-style")
    return (f"{what} needs the '{extra}' extra ({top} is not installed): "
            f"pip install 'robust-style[{extra}]'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robust-style",
        description="Fast neural style transfer with adversarially robust perceptual "
        "losses: train a style network per artwork, export it to ONNX, serve it over gRPC.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"robust-style {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="debug log output (default: info)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    package = importlib.import_module("robust_style.cli")
    names = sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                   if m.name.startswith("cmd_"))
    for name in names:
        importlib.import_module(f"robust_style.cli.{name}").register(sub)
    return parser


#: The exit codes every command uses (``--help`` epilog; docs/README.md's CLI section).
EXIT_CODES = ("exit codes: 0 success; 1 partial failure (some inputs or checks failed, the rest "
              "done: e.g. export verification, weights verify, a stylize batch with failed "
              "files); 2 usage or input error; 130 interrupted")


def _setup_logging(verbose: int, quiet: bool) -> None:
    """Info by default (a server says what it serves), ``-v`` debug, ``-q`` warnings only."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 0 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        # bare ``robust-style`` like a bare command group: usage on stderr, exit 2
        parser.print_usage(sys.stderr)
        sys.stderr.write("robust-style: error: a COMMAND is required (robust-style --help)\n")
        return 2
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args.handler(args) or 0)
    except UserError as exc:
        sys.stderr.write(f"robust-style: error: {exc}\n")
        return 2
    except ModuleNotFoundError as exc:
        sys.stderr.write(f"robust-style: error: {missing_extra_message(exc, args.command)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("robust-style: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
