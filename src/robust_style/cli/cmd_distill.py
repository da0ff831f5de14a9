"""``robust-style distill``: teach a small, fast style network to reproduce a trained one."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from robust_style.cli.options import add_run_options, add_trust_checkpoint, show_progress
from robust_style.transformer_net.arch import ARCH_PRESETS

__all__ = ["register"]

# Options whose value is copied into DistillConfig under the same name.
_FIELDS = ("teacher", "content", "out", "arch", "name", "image_size", "bank_size", "batch_size",
           "lr", "max_steps", "max_minutes", "loss", "perceptual", "perceptual_weights",
           "perceptual_weight", "seed", "precision",
           "checkpoint_interval", "sample_interval", "log_interval", "keep_checkpoints",
           "sample_image", "trust_checkpoint")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "distill", help="distil a trained style model into a smaller, faster network",
        description="Train a small style network (an --arch preset) to reproduce TEACHER's "
        "outputs on random crops of the --content photos (pixel loss against the teacher's "
        "outputs; with --perceptual, also their Gram matrices on a loss network). Writes a training run folder: export and serve it like "
        "any other. Every option left out takes its default; with --resume, the run's value.",
        argument_default=None,
    )
    p.add_argument("teacher", nargs="?", metavar="TEACHER",
                   help="the trained style: a run folder, a style model .pt, or an exported "
                   ".onnx (e.g. the bundled the-scream.onnx)")
    p.add_argument("--arch", metavar="NAME", help="student architecture: " +
                   ", ".join(ARCH_PRESETS) + " (default quarter; docs/realtime.md)")
    add_run_options(p, content="folder of photos (recursive)", checkpoint_every=200,
                    sample_every=200, sample="a content | teacher | student picture",
                    sample_image="photo for the samples (default: the last of --content; it "
                    "is then kept out of the crops)")
    p.add_argument("--name", help="style name (default: the teacher's name + '-' + arch)")
    p.add_argument("--image-size", type=int, help="crop side (default 256)")
    p.add_argument("--bank-size", type=int, metavar="N",
                   help="crops the teacher stylises once, at the start (default 256)")
    p.add_argument("--batch-size", type=int, help="crops per step (default 8)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 2e-3)")
    p.add_argument("--max-steps", type=int, help="steps (default 2000)")
    p.add_argument("--loss", choices=("l1", "l2"), help="pixel loss (default l1)")
    p.add_argument("--perceptual", metavar="BACKBONE",
                   help="add a Gram term between student and teacher outputs on this loss "
                   "network (e.g. vgg16-caffe; robust-style weights list); default: none")
    p.add_argument("--perceptual-weights", metavar="FILE",
                   help="weights for --perceptual, a file or a registry name (default: the "
                   "registry's for that backbone)")
    p.add_argument("--perceptual-weight", type=float, metavar="W",
                   help="weight of the Gram term, relative to the pixel loss (default 1.0)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                   help="auto (default: bf16 where the CPU computes it natively), fp32, bf16")
    add_trust_checkpoint(p, "a TEACHER .pt", default=None)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from robust_style.errors import UserError
    from robust_style.transformer_net.distill import DistillConfig, distill

    given: dict[str, Any] = {k: getattr(args, k) for k in _FIELDS if getattr(args, k) is not None}
    if args.resume:
        result = distill(DistillConfig(teacher=given.get("teacher", ""),
                                       content=given.get("content", ""), out=args.out),
                         resume=True, overrides=given,
                       progress=show_progress(args))
    else:
        for required, flag in (("teacher", "TEACHER"), ("content", "--content")):
            if required not in given:
                raise UserError(f"{flag} is required (or add --resume to continue a run)")
        result = distill(DistillConfig(**given), progress=show_progress(args))
    sys.stdout.write(f"style model: {result.style_model} ({result.steps} steps)\n")
    return 0
