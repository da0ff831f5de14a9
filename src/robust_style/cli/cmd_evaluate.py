"""``robust-style evaluate``: score style models on held-out photos with independent judges.

Example::

    robust-style evaluate src/robust_style/models/the-scream.onnx runs/scream \\
        --artwork the-scream.jpg --photos heldout/ --out eval/

Prints a table (per photo, then the mean per model) and writes ``eval/scores.csv``,
``eval/scores.md`` and ``eval/grid.png`` (photos x models). Lower is nearer for every
judge. See docs/quality.md.
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
        "evaluate", help="score style models on held-out photos (style, content, speed)",
        description="Run style models on held-out photos and judge the results with networks "
        "independent of any training loss: style distance to the artwork (Gram matrices, "
        "Oxford VGG-19 at Gatys et al.'s layers, and AlexNet), content distance to the photo "
        "(LPIPS-alex v0.1), and time per image. Lower is nearer.")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="exported .onnx file, training run folder, style_model.pt or checkpoint")
    p.add_argument("--artwork", type=Path, metavar="IMG",
                   help="the painting the models imitate (not needed with --video)")
    p.add_argument("--photos", required=True, type=Path, metavar="DIR",
                   help="folder of held-out photos (never ones the models trained on)")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="write scores.csv, scores.md and grid.png here")
    p.add_argument("--size", type=int, default=256,
                   help="shorter side the photos are resized to before stylising (default "
                   "256; 0 = as they are)")
    p.add_argument("--judge-size", type=int, default=256,
                   help="shorter side at which the style judges compare (default 256)")
    p.add_argument("--max-photos", type=int, default=None, help="use at most N photos")
    p.add_argument("--judges", nargs="+", metavar="JUDGE",
                   help="only these judges: style_vgg19 style_alexnet content_lpips")
    add_device(p, "torch device of the judges")
    add_trust_checkpoint(p, "torch model files")
    p.add_argument("--summary-only", action="store_true",
                   help="print only the mean per model, not every photo")
    add_no_progress(p)
    p.add_argument("--video", action="store_true",
                   help="measure temporal stability instead: warping error and frames/s on "
                   "clips synthesised from the photos under exact pan and affine motion "
                   "(docs/video.md)")
    p.add_argument("--frames", type=int, default=10, help="frames per clip with --video (10)")
    p.add_argument("--clip", type=Path, action="append", default=[], metavar="VIDEO",
                   help="with --video, also a real video file (its first --frames frames, "
                   "flow estimated with OpenCV DIS); repeatable")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from robust_style.errors import UserError
    from robust_style.evaluate import JUDGES, EvalConfig, evaluate, format_table, write_outputs

    if args.video:
        return _run_video(args)
    if args.artwork is None:
        raise UserError("--artwork is required (except with --video)")

    cfg = EvalConfig(models=tuple(args.models), artwork=args.artwork, photos=args.photos,
                     size=args.size, judge_size=args.judge_size, max_photos=args.max_photos,
                     judges=tuple(args.judges or JUDGES), device=str(torch_device(args.device)),
                     trust=args.trust_checkpoint, progress=show_progress(args))
    result = evaluate(cfg)
    sys.stdout.write(format_table(result, per_photo=not args.summary_only))
    if args.out is not None:
        paths = write_outputs(result, args.out)
        sys.stdout.write(f"wrote {paths['csv']}, {paths['markdown']} and {paths['grid']}\n")
    return 0


def _run_video(args: argparse.Namespace) -> int:
    import csv
    import dataclasses

    from robust_style.evaluate.video import VideoScore, evaluate_video, format_video_table
    from robust_style.fileio import atomic_write

    scores = evaluate_video(args.models, args.photos, frames=args.frames,
                            max_photos=args.max_photos, trust=args.trust_checkpoint,
                            real_clips=args.clip, progress=show_progress(args))
    sys.stdout.write(format_video_table(scores, per_clip=not args.summary_only))
    if args.out is not None:
        path = Path(args.out) / "video_scores.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, [f.name for f in dataclasses.fields(VideoScore)])
            w.writeheader()
            w.writerows(dataclasses.asdict(s) for s in scores)
        sys.stdout.write(f"wrote {path}\n")
    return 0
