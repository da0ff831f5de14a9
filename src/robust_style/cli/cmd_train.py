"""``robust-style train`` (artworks + photos -> a style network) and ``robust-style adapt``
(a new artwork learnt by a trained network's instance norms alone): one set of options."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from robust_style.cli.options import (
    add_device,
    add_run_options,
    add_trust_checkpoint,
    show_progress,
)
from robust_style.transformer_net.arch import ARCH_PRESETS

__all__ = ["register", "register_adapt"]

# Options whose value is copied into TrainConfig under the same name.
_FIELDS = (
    "norms_only", "style", "content", "out", "backbone", "backbone_weights", "trust_checkpoint", "name",
    "image_size", "style_size", "batch_size", "lr", "epochs", "max_steps", "max_minutes",
    "content_weight",
    "style_weight", "tv_weight", "style_layers", "content_layer", "pooling", "seed", "device",
    "precision", "workers", "checkpoint_interval", "sample_interval", "log_interval",
    "keep_checkpoints", "sample_image", "compile", "channels_last", "temporal_weight",
    "init_from", "arch",
)


def _weight(text: str) -> float | str:
    if text == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'auto', got {text!r}") from None


def _layers(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a style network for one artwork (or one for several)",
        description="Train a feed-forward style network (Johnson et al. 2016) for one artwork "
        "with a perceptual loss from a robust ResNet-50 or VGG. Several --style images train "
        "one multi-style network (Dumoulin et al. 2017: a scale and shift per style in every "
        "instance norm); export picks a style or a blend of them. Every option left out "
        "takes its default; with --resume, the resumed run's value.",
        argument_default=None,
    )
    p.add_argument("--style", metavar="IMAGE", action="append",
                   help="the artwork (JPEG/PNG/WebP); repeat it for a multi-style network, "
                   "each style named after its file")
    _add_options(p, adapt=False)
    p.set_defaults(handler=_run)


def register_adapt(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "adapt", help="learn a new artwork by training only a base network's norms",
        description="Learn a new artwork from a trained BASE network (a multi-style run or "
        "a single-style one) by training only its instance-norm scales and shifts (about "
        "3.2 k numbers for Johnson's network); every convolution stays the base's "
        "(Dumoulin et al. 2017). Norms start at the mean of the base's styles. Writes an "
        "ordinary run: samples, checkpoints, --resume, export, as train.",
        argument_default=None,
    )
    p.add_argument("base", metavar="BASE",
                   help="the base network: a run folder, its style_model.pt, an exported "
                   ".onnx, or the name of a bundled style (e.g. the-scream)")
    p.add_argument("--style", metavar="IMAGE", action="append", help="the new artwork")
    _add_options(p, adapt=True)
    p.set_defaults(handler=_run_adapt)


def _add_options(p: argparse.ArgumentParser, *, adapt: bool) -> None:
    add_run_options(p, content="folder of training photos (recursive)", checkpoint_every=500,
                    sample_every=200, sample="a sample picture",
                    sample_image="photo stylised for the samples (default: one held out of "
                    "--content)")
    p.add_argument("--backbone", metavar="NAME",
                   help="loss network: robust-resnet50 (default), resnet50, vgg16, vgg16-caffe, "
                   "vgg19, vgg19-caffe, alexnet, or a name from `robust-style weights list`")
    p.add_argument("--backbone-weights", metavar="FILE", help="the loss network's checkpoint")
    add_trust_checkpoint(p, "--backbone-weights" + (" and BASE" if adapt else ""), default=None)
    p.add_argument("--name", help="style name (default: the artwork's file name)")
    p.add_argument("--image-size", type=int, help="training crop size (default 256)")
    p.add_argument("--style-size", type=int, help="style image shorter side (default: image size)")
    p.add_argument("--batch-size", type=int, help="images per step per process (default 4)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default "
                   f"{ADAPT_LR if adapt else 1e-3:g}" + (": only the norms learn; at 1e-3 "
                   "they had not caught up with a full run in 5 minutes, docs/adapt.md)"
                   if adapt else ")"))
    p.add_argument("--epochs", type=int, help="passes over the photos (default 2)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (overrides epochs)")
    p.add_argument("--content-weight", type=_weight, help="number or 'auto' (default: per backbone)")
    p.add_argument("--style-weight", type=_weight, help="number or 'auto' (default: per backbone)")
    p.add_argument("--tv-weight", type=_weight, help="number or 'auto' (default: per backbone)")
    p.add_argument("--style-layers", type=_layers, metavar="L1,L2,...",
                   help="style layers (default: per backbone)")
    p.add_argument("--content-layer", metavar="LAYER", help="content layer (default: per backbone)")
    p.add_argument("--pooling", choices=("max", "avg"), help="loss-network pooling (default max)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    add_device(p)
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"),
                   help="auto (default: bf16 where the CPU/GPU computes it natively, else "
                   "fp32); bf16 autocast (CPU/GPU); fp16 AMP (CUDA)")
    p.add_argument("--compile", choices=("auto", "on", "off"),
                   help="torch.compile the loss computation: auto (default) = on CUDA only "
                   "(on CPU compiling costs minutes and did not pay off, docs/training.md); "
                   "falls back to eager if compiling fails")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="NHWC memory layout for the networks (default on)")
    p.add_argument("--workers", type=int, help="data-loader worker processes (default 2)")
    if not adapt:
        p.add_argument("--temporal-weight", type=float, metavar="W",
                       help="weight of the temporal-stability regulariser (Wang et al. 2020: "
                       "stylise(warp(x) + noise) vs warp(stylise(x))); 0 = off (default)")
        p.add_argument("--arch", metavar="NAME",
                       help="network architecture preset: " + ", ".join(ARCH_PRESETS) +
                       " (default johnson: Johnson et al. 2016; the others are smaller and "
                       "faster, docs/realtime.md)")
        p.add_argument("--init-from", metavar="RUN_OR_MODEL",
                       help="start from this style network's weights (run folder, .pt, or an "
                       "exported .onnx) to fine-tune it; the optimiser starts fresh")


def _run(args: argparse.Namespace) -> int:
    from robust_style.errors import UserError
    from robust_style.transformer_net.config import TrainConfig
    from robust_style.transformer_net.train import train

    given: dict[str, Any] = {k: getattr(args, k) for k in _FIELDS
                             if getattr(args, k, None) is not None}
    if "style" in given:
        styles = tuple(given["style"])
        given["style"] = styles[0] if len(styles) == 1 else styles
        if len(styles) > 1 and args.name:
            raise UserError("--name names a single-style network; the styles of a "
                            "multi-style one are named after their files")
    if args.resume:
        result = train(TrainConfig(style=given.get("style", ""), content=given.get("content", ""),
                                   out=args.out), resume=True, overrides=given,
                       progress=show_progress(args))
    else:
        for required in ("style", "content"):
            if required not in given:
                raise UserError(f"--{required} is required (or add --resume to continue a run)")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        result = train(TrainConfig(**{k: v for k, v in given.items() if k in known}),
                       progress=show_progress(args))
    import sys

    sys.stdout.write(f"style model: {result.style_model} ({result.steps} steps)\n")
    return 0


#: ``adapt``'s learning rate: measured against 1e-3 (docs/adapt.md, benchmarks/bench_adapt.py).
ADAPT_LR = 1e-2


def _run_adapt(args: argparse.Namespace) -> int:
    from pathlib import Path

    from robust_style.cli.cmd_serve import default_models_dir

    bundled = default_models_dir() / f"{args.base}.onnx"
    if not Path(args.base).exists() and bundled.is_file():
        args.base = str(bundled)
    args.init_from, args.norms_only = args.base, True
    if args.lr is None and not args.resume:
        args.lr = ADAPT_LR
    if args.style and len(args.style) > 1:
        from robust_style.errors import UserError

        raise UserError("adapt learns one artwork at a time: give one --style")
    return _run(args)
