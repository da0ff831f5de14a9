"""``robust-style backbone train``: adversarially train a robust ResNet-50 loss network.

Needs the optional extra: ``pip install 'robust-style[robustness]'`` (MadryLab's
``robustness`` library, run through :mod:`robust_style.analysis.robustness_compat`).

Example (fine-tune a robust ImageNet ResNet-50 on your own labelled photos)::

    robust-style backbone train --data my-photos/ --out runs/robust-mine \\
        --init robust-resnet50-l2-3 --constraint 2 --eps 3 --attack-steps 7 --epochs 5

``--data`` has one sub-folder of images per class. The result,
``<out>/robust-resnet50.pt``, is used with ``--backbone robust-resnet50
--backbone-weights <out>/robust-resnet50.pt``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robust_style.cli.options import (
    add_command_group,
    add_device,
    add_trust_checkpoint,
    torch_device,
)

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_command_group(
        subparsers, "backbone", dest="backbone_command",
        help="make loss networks (adversarial training with MadryLab's robustness)",
        description="Make loss networks.")
    p = sub.add_parser(
        "train", help="adversarially train a ResNet-50 on a labelled image folder",
        description="Adversarial training (PGD, L2 or Linf) of a ResNet-50 with MadryLab's "
        "robustness library (train.train_model), on an ImageFolder-layout folder. Writes "
        "<out>/robust-resnet50.pt, loadable as the robust-resnet50 backbone. Needs "
        "pip install 'robust-style[robustness]'.")
    p.add_argument("--data", required=True, type=Path, metavar="DIR",
                   help="training images, one sub-folder per class")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.add_argument("--val", type=Path, metavar="DIR",
                   help="validation images, same classes (default: --data without augmentation)")
    p.add_argument("--init", metavar="CKPT",
                   help="start from this ResNet-50 checkpoint or registered weights name "
                   "(e.g. robust-resnet50-l2-3); default: random initialisation")
    add_trust_checkpoint(p, "--init")
    p.add_argument("--constraint", choices=("2", "inf"), default="2",
                   help="perturbation ball: L2 or Linf (default 2)")
    p.add_argument("--eps", type=float, default=None,
                   help="ball radius in [0,1] pixel units (default 3.0 for L2, 4/255 for Linf, "
                   "the published ImageNet models)")
    p.add_argument("--attack-steps", type=int, default=7, help="PGD steps (default 7)")
    p.add_argument("--attack-lr", type=float, default=None,
                   help="PGD step size (default 2.5*eps/attack-steps)")
    p.add_argument("--epochs", type=int, default=1, help="default 1")
    p.add_argument("--batch-size", type=int, default=16, help="default 16")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    p.add_argument("--step-lr", type=int, default=None,
                   help="divide the learning rate by 10 every N epochs (default: never)")
    p.add_argument("--image-size", type=int, default=224, help="training crop (default 224)")
    add_device(p)
    p.add_argument("--workers", type=int, default=0, help="data-loading processes (default 0)")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from robust_style.analysis.backbone_train import BackboneTrainConfig, train_backbone
    from robust_style.perceptual.weights import resolve_backbone

    init = None
    if args.init:
        _, init = resolve_backbone("robust-resnet50", args.init)
    eps = args.eps if args.eps is not None else (3.0 if args.constraint == "2" else 4 / 255)
    cfg = BackboneTrainConfig(
        data_dir=args.data, out_dir=args.out, val_dir=args.val, init=init,
        trust=args.trust_checkpoint, constraint=args.constraint, eps=eps,
        attack_steps=args.attack_steps, attack_lr=args.attack_lr, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, step_lr=args.step_lr,
        image_size=args.image_size, device=str(torch_device(args.device)), workers=args.workers, seed=args.seed)
    result = train_backbone(cfg)
    sys.stdout.write(f"classes: {', '.join(result.classes)} (logits 0..{len(result.classes) - 1})\n"
                     f"wrote {result.weights} (weights only; use --backbone robust-resnet50 "
                     f"--backbone-weights {result.weights})\n"
                     f"robustness' own checkpoint: {result.library_checkpoint}\n")
    return 0
