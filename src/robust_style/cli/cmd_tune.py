"""``robust-style tune``: measured default loss weights for a backbone.

Example (a user with the robust ResNet-50 gets its measured defaults in one command)::

    robust-style tune --backbone robust-resnet50-l2-3 --style the-scream.jpg \\
        --content photos/train --photos photos/heldout --out tune/robust

Trains one short run per style:content ratio (same steps, size, batch and seed), scores
them with `robust-style evaluate`'s judges on the held-out photos, and prints the knee of
the trade-off with the weights to pass to `robust-style train`. Writes ``tune.json``,
``tune.md``, ``tune.png`` (the trade-off) and ``grid.png`` (photos x ratios). Finished runs
in ``OUT/runs`` are reused, so an interrupted sweep continues. See docs/quality.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robust_style.cli.options import add_no_progress, add_trust_checkpoint, show_progress

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tune", help="choose a backbone's loss weights by measurement (short runs + judges)",
        description="Short training runs over a grid of style:content ratios with one budget, "
        "judged on held-out photos; the knee of the style/content trade-off is chosen.")
    p.add_argument("--backbone", required=True, metavar="NAME",
                   help="architecture or registered weights name")
    p.add_argument("--backbone-weights", metavar="FILE", help="the loss network's checkpoint")
    add_trust_checkpoint(p, "the checkpoints")
    p.add_argument("--style", required=True, type=Path, metavar="IMG", help="the artwork")
    p.add_argument("--content", required=True, type=Path, metavar="DIR",
                   help="training photos")
    p.add_argument("--photos", required=True, type=Path, metavar="DIR",
                   help="held-out photos for the judges (not in --content)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="sweep folder")
    p.add_argument("--ratios", type=float, nargs="+", default=[0.3, 1.0, 3.0, 9.0, 27.0],
                   help="style:content ratios at step 0 (default 0.3 1 3 9 27: the measured "
                   "knees of the real VGG-16, VGG-19 and AlexNet lie in it; auto weights use 3)")
    p.add_argument("--tv-ratio", type=float, default=0.001,
                   help="TV:content ratio at step 0 (default 0.001, as auto weights)")
    p.add_argument("--max-steps", "--steps", dest="steps", type=int, default=300,
                   help="training steps per ratio (300, the budget of the measured defaults)")
    p.add_argument("--image-size", type=int, default=128, help="training crop size (128)")
    p.add_argument("--batch-size", type=int, default=4, help="batch size (4)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (1e-3)")
    p.add_argument("--eval-size", type=int, default=128,
                   help="shorter side of the held-out photos when judged (128)")
    p.add_argument("--max-photos", type=int, default=None, help="judge at most N photos")
    p.add_argument("--seed", type=int, default=0, help="seed of every run (0)")
    p.add_argument("--workers", type=int, default=0, help="data-loader workers (0)")
    add_no_progress(p)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from robust_style.evaluate.tune import TuneConfig, tune
    from robust_style.evaluate.tune_report import format_tune_table, write_tune_outputs

    cfg = TuneConfig(style=args.style, content=args.content, photos=args.photos, out=args.out,
                     backbone=args.backbone, backbone_weights=args.backbone_weights,
                     ratios=tuple(args.ratios), tv_ratio=args.tv_ratio, steps=args.steps,
                     image_size=args.image_size, batch_size=args.batch_size, lr=args.lr,
                     eval_size=args.eval_size, max_photos=args.max_photos, seed=args.seed,
                     workers=args.workers, trust=args.trust_checkpoint,
                     progress=show_progress(args))
    result = tune(cfg)
    paths = write_tune_outputs(result, args.out)
    c = result.chosen
    sys.stdout.write(format_tune_table(result))
    sys.stdout.write(f"knee: ratio {c.ratio:g} -> robust-style train --backbone {args.backbone} "
                     f"--content-weight {c.content_weight:g} --style-weight {c.style_weight:.4g} "
                     f"--tv-weight {c.tv_weight:.4g}\n")
    sys.stdout.write(f"wrote {', '.join(str(v) for v in paths.values())}\n")
    return 0
