"""``robust-style optimize``: per-image style transfer by optimisation (Gatys et al. 2016).

Example::

    robust-style optimize --content photo.jpg --style the-scream.jpg \\
        --backbone vgg16-caffe -o out.png --steps 100 --image-size 384

Single-layer mode (the layer comparisons of Ilyas et al.'s comment on Nakano 2019)::

    robust-style optimize ... --style-layer relu3_3

``--save-every N`` also writes ``<out-stem>_<step>.png`` every N steps. Every image is
written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robust_style.cli.options import (
    add_device,
    add_no_progress,
    add_trust_checkpoint,
    show_progress,
    torch_device,
)

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "optimize", help="style one image by optimising its pixels (Gatys et al. 2016)",
        description="Per-image style transfer: optimise the pixels of one image so its "
        "Gram matrices match the style image's and its activations the content image's, "
        "with any loss network.")
    p.add_argument("--content", required=True, type=Path, metavar="IMG", help="content image")
    p.add_argument("--style", required=True, type=Path, metavar="IMG", help="style image")
    p.add_argument("-o", "--out", required=True, type=Path, metavar="OUT",
                   help="output image (.png or .jpg)")
    p.add_argument("--backbone", required=True, metavar="NAME",
                   help="loss network: architecture or registered weights name")
    p.add_argument("--backbone-weights", metavar="FILE",
                   help="the loss network's checkpoint (or a registered weights name)")
    add_trust_checkpoint(p, "--backbone-weights")
    p.add_argument("--image-size", type=int, default=192,
                   help="shorter side of the content image and output (default 192, for CPU)")
    p.add_argument("--style-size", type=int, default=None,
                   help="shorter side of the style image (default: --image-size)")
    layers = p.add_mutually_exclusive_group()
    layers.add_argument("--style-layers", nargs="+", metavar="LAYER",
                        help="style layers (default: the backbone's)")
    layers.add_argument("--style-layer", metavar="LAYER",
                        help="single-layer mode: the style loss from this layer only")
    p.add_argument("--content-layer", metavar="LAYER",
                   help="content layer (default: the backbone's; 'none' = no content loss)")
    p.add_argument("--content-weight", type=float, default=1.0, help="default 1")
    p.add_argument("--style-weight", type=float, default=10.0, help="default 10")
    p.add_argument("--tv-weight", type=float, default=0.0, help="default 0")
    p.add_argument("--absolute", action="store_true",
                   help="absolute loss terms (default: each content/style term divided by "
                   "the mean square of its target, so one set of weights fits every backbone)")
    p.add_argument("--steps", type=int, default=100, help="optimiser iterations (default 100)")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs",
                   help="default lbfgs (Gatys et al.; Nakano 2019)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default 1.0 for lbfgs, 0.02 for adam)")
    p.add_argument("--init", choices=("content", "noise"), default="content",
                   help="start from the content image or from uniform noise (default content)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise init (default 0)")
    p.add_argument("--save-every", type=int, default=0, metavar="N",
                   help="also save the image every N steps as <out-stem>_<step><suffix>")
    p.add_argument("--pooling", choices=("max", "avg"), default="max",
                   help="pooling of the loss network (avg: Gatys et al. 2016; default max)")
    add_device(p)
    add_no_progress(p)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from robust_style.analysis.images import load_image, save_image
    from robust_style.analysis.optimize import GatysConfig, optimize_image
    from robust_style.errors import UserError
    from robust_style.perceptual import BACKBONES, build_loss_network
    from robust_style.perceptual.weights import resolve_backbone

    if args.save_every < 0:
        raise UserError("--save-every must be >= 0")
    if args.out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"-o {args.out}: use a .png or .jpg file name")
    arch, weights = resolve_backbone(args.backbone, args.backbone_weights)
    spec = BACKBONES[arch]
    if args.style_layer:
        style_layers: tuple[str, ...] = (args.style_layer,)
    elif args.style_layers:
        style_layers = tuple(args.style_layers)
    else:
        style_layers = tuple(spec.style_layers)
    content_layer = args.content_layer or spec.content_layer
    content_layer = None if content_layer.lower() == "none" else content_layer
    wanted = set(style_layers) | ({content_layer} if content_layer is not None else set())
    unknown = sorted(wanted - set(spec.layers))
    if unknown:
        raise UserError(f"unknown layer(s) {', '.join(map(str, unknown))} for {arch}; choose "
                        f"from {', '.join(spec.layers)}")
    cfg = GatysConfig(style_layers=style_layers, content_layer=content_layer,
                      content_weight=args.content_weight, style_weight=args.style_weight,
                      tv_weight=args.tv_weight, relative=not args.absolute, steps=args.steps,
                      optimizer=args.optimizer, lr=args.lr, init=args.init, seed=args.seed)
    content = load_image(args.content, args.image_size)
    style = load_image(args.style, args.style_size or args.image_size)
    device = torch_device(args.device)
    net = build_loss_network(arch, weights, pooling=args.pooling, trust=args.trust_checkpoint,
                             device=device)

    def on_step(step: int, image: torch.Tensor, _loss: float) -> None:
        if args.save_every and step % args.save_every == 0 and step != cfg.steps:
            save_image(image, args.out.with_name(f"{args.out.stem}_{step:05d}{args.out.suffix}"))

    result = optimize_image(net, content.to(device), style.to(device), cfg, on_step=on_step,
                            progress=show_progress(args))
    save_image(result.image, args.out)
    sys.stdout.write(f"{arch}: style {', '.join(style_layers)}; content {cfg.content_layer}; "
                     f"loss {result.initial_loss:.4g} -> {result.final_loss:.4g} in "
                     f"{cfg.steps} {cfg.optimizer} steps; wrote {args.out}\n")
    return 0
