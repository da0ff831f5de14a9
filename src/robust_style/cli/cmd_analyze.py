"""``robust-style analyze robustness``: layer robustness R(f) of loss networks.

Example::

    robust-style analyze robustness --backbone vgg16-caffe \\
        --backbone resnet50 --backbone-weights random \\
        --images photos/ --out results/ --image-size 128 --eps 1 --steps 10

``--backbone`` may be repeated; a ``--backbone-weights`` belongs to the ``--backbone``
just before it (``random`` = a randomly initialised control network; none = the
backbone's registered weights if it names some, see ``robust-style weights list``).
Writes ``<out>/robustness.csv`` and ``<out>/robustness.png`` and prints a table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robust_style.cli.options import (
    add_command_group,
    add_device,
    add_no_progress,
    add_trust_checkpoint,
    show_progress,
    torch_device,
)

__all__ = ["register"]

RANDOM = "random"


class _Backbone(argparse.Action):
    """``--backbone NAME``: start a new ``[name, weights]`` entry."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        entries = list(getattr(namespace, self.dest) or [])
        entries.append([str(values), None])
        setattr(namespace, self.dest, entries)


class _Weights(argparse.Action):
    """``--backbone-weights FILE``: the weights of the ``--backbone`` given just before."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        entries = getattr(namespace, "backbone", None)
        if not entries or entries[-1][1] is not None:
            parser.error("each --backbone-weights must follow its own --backbone")
        entries[-1][1] = str(values)


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_command_group(
        subparsers, "analyze", dest="analysis", metavar="ANALYSIS",
        help="instruments for choosing a loss network (layer robustness R(f))",
        description="Instruments for choosing and checking a loss network.")
    p = sub.add_parser(
        "robustness", help="layer robustness R(f) (Ilyas et al., Distill 2019) per tap layer",
        description="R(f) = E[max_{|x'-x|<=eps} |f(x')-f(x)|] / E[|f(x1)-f(x2)|] per tap layer, "
        "the inner maximum by projected gradient ascent in the L2 ball. Lower = more robust.")
    p.add_argument("--backbone", metavar="NAME", action=_Backbone, required=True,
                   help="architecture or registered weights name; repeat to compare backbones")
    p.add_argument("--backbone-weights", metavar="FILE", action=_Weights,
                   help="checkpoint of the --backbone just before ('random' = random "
                   "initialisation, the control)")
    add_trust_checkpoint(p, "the checkpoints")
    p.add_argument("--photos", "--images", dest="images", metavar="DIR", required=True, type=Path,
                   help="folder of photos (searched recursively)")
    p.add_argument("--out", metavar="DIR", required=True, type=Path,
                   help="where robustness.csv and robustness.png go")
    p.add_argument("--image-size", type=int, default=128,
                   help="images are resized and centre-cropped to this square (default 128)")
    p.add_argument("--max-images", type=int, default=16,
                   help="use at most this many images (default 16)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--layers", metavar="LAYER", nargs="+",
                       help="only these tap layers (default: every tap layer of each backbone)")
    which.add_argument("--first-style-layers", type=int, metavar="N",
                       help="only the first N default style layers of each backbone (Ilyas et "
                       "al.'s figure: N=4)")
    p.add_argument("--eps", type=float, default=1.0,
                   help="L2 radius of the perturbation in [0,1] pixel units (default 1.0)")
    p.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    p.add_argument("--step-size", type=float, default=None,
                   help="L2 length of a PGD step (default 2.5*eps/steps)")
    p.add_argument("--batch-size", type=int, default=4, help="images per PGD batch (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starts (default 0)")
    p.add_argument("--pooling", choices=("max", "avg"), default="max",
                   help="pooling of the loss network (default max, as trained)")
    add_device(p)
    add_no_progress(p)
    p.set_defaults(handler=_run)


def _resolve(backbone: str, weights: str | None) -> tuple[str, Path | None]:
    from robust_style.errors import UserError
    from robust_style.perceptual import BACKBONES
    from robust_style.perceptual.weights import resolve_backbone

    if weights == RANDOM:
        if backbone not in BACKBONES:
            raise UserError(f"--backbone-weights random needs an architecture name "
                            f"({', '.join(BACKBONES)}), not {backbone!r}")
        return backbone, None
    return resolve_backbone(backbone, weights)


def _run(args: argparse.Namespace) -> int:

    from robust_style.analysis.images import load_image_folder
    from robust_style.analysis.robustness_metric import RobustnessConfig, layer_robustness
    from robust_style.analysis.robustness_report import (
        RobustnessRow,
        format_table,
        plot_chart,
        write_csv,
    )
    from robust_style.errors import UserError
    from robust_style.perceptual import BACKBONES, build_loss_network

    if args.first_style_layers is not None and args.first_style_layers < 1:
        raise UserError("--first-style-layers must be at least 1")
    if args.max_images < 2:
        raise UserError("--max-images must be at least 2 (R(f) compares pairs of images)")
    cfg = RobustnessConfig(eps=args.eps, steps=args.steps, step_size=args.step_size,
                           batch_size=args.batch_size, seed=args.seed)
    resolved = [_resolve(b, w) for b, w in args.backbone]
    if args.layers:
        known = {name for arch, _ in resolved for name in BACKBONES[arch].layers}
        unknown = sorted(set(args.layers) - known)
        if unknown:
            raise UserError(f"unknown layer(s) {', '.join(unknown)} for every backbone given")
    images, files = load_image_folder(args.images, args.image_size, args.max_images)
    if images.shape[0] < 2:
        raise UserError(f"{args.images} holds {images.shape[0]} image; R(f) needs at least two")
    device = torch_device(args.device)
    images = images.to(device)
    args.out.mkdir(parents=True, exist_ok=True)

    rows: list[RobustnessRow] = []
    for arch, path in resolved:
        net = build_loss_network(arch, path, pooling=args.pooling, trust=args.trust_checkpoint,
                                 device=device)
        if args.first_style_layers:
            layers = list(BACKBONES[arch].style_layers[:args.first_style_layers])
        else:
            layers = list(net.layers) if not args.layers else [
                name for name in net.layers if name in args.layers]
        if not layers:
            raise UserError(f"none of --layers {' '.join(args.layers)} is a tap layer of {arch} "
                            f"({', '.join(net.layers)})")
        tag = path.name if path is not None else "random init"
        results = layer_robustness(net, images, layers, cfg, label=f"{arch} ({tag})",
                                   progress=show_progress(args))
        rows += [RobustnessRow(arch, tag, r, args.image_size, cfg) for r in results]
        del net

    csv_path = write_csv(rows, args.out / "robustness.csv")
    png_path = plot_chart(rows, args.out / "robustness.png")
    sys.stdout.write(f"R(f) on {len(files)} images of {args.images} at {args.image_size}px, "
                     f"L2 eps={cfg.eps:g}, {cfg.steps} steps of {cfg.alpha:.4g}\n")
    sys.stdout.write(format_table(rows))
    sys.stdout.write(f"wrote {csv_path} and {png_path}\n")
    return 0
