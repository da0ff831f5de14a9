"""The video half of ``robust-style stylize``: video files, animations, frame folders.

``stylize clip.mp4 --style S -o out.mp4`` writes one file; ``-o DIR`` writes
``DIR/clip_S.mp4`` for each input; ``--frames`` writes PNG frames into ``DIR/clip_S/``.
A folder of frames is an input when the output is a video or animation file
(``stylize frames/ -o out.mp4 --fps 30``). The work is :mod:`robust_style.video`.
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

from robust_style.errors import UserError

__all__ = ["add_arguments", "wanted", "run"]


def _fps(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a frame rate like 25 or 30000/1001, "
                                         f"got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the frame rate must be > 0, got {text}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video (files .mp4 .mkv .mov .webm .avi, animated .gif/.webp, "
                             "frame folders)")
    g.add_argument("--fps", type=_fps, default=None,
                   help="frame rate of a folder of frames (default 25)")
    g.add_argument("--frames", action="store_true",
                   help="write each video's frames as PNGs into OUT_DIR/NAME_STYLE/")


def _is_video_input(path: Path) -> bool:
    from robust_style.video import VIDEO_SUFFIXES, is_animation

    return path.is_file() and (path.suffix.lower() in VIDEO_SUFFIXES or is_animation(path))


def wanted(args: argparse.Namespace) -> bool:
    """Is this a video job (a video/animation input, or a video/animation output)?"""
    from robust_style.video import output_kind

    return (output_kind(args.out) is not None or bool(getattr(args, "frames", False))
            or any(_is_video_input(p) for p in args.inputs))


def _jobs(args: argparse.Namespace, style: str) -> list[Any]:
    from robust_style.video import VideoJob, output_kind

    common = {"style": style, "strength": args.strength, "preserve_color": args.preserve_color,
              "max_side": args.max_side, "fps": args.fps}
    for p in args.inputs:
        if not p.exists():
            raise UserError(f"no such file or folder: {p}")
    if output_kind(args.out) is not None:
        if len(args.inputs) != 1:
            raise UserError(f"-o {args.out} is one file; give one video, animation or frame "
                            "folder (or -o OUT_DIR for several)")
        return [VideoJob(args.inputs[0], args.out, **common)]
    jobs = []
    for p in args.inputs:
        if not _is_video_input(p):
            raise UserError(f"{p}: not a video or animation; stylise photos and videos in "
                            "separate runs (a folder of frames needs -o FILE.mp4)")
        name = f"{p.stem}_{style}" + ("" if args.frames else p.suffix.lower())
        jobs.append(VideoJob(p, args.out / name, **common))
    return jobs


def run(args: argparse.Namespace, client: Any, style: str) -> int:
    """Stylise every video job of ``args`` through ``client``; one line per output."""
    from robust_style.video import stylize_video

    for job in _jobs(args, style):
        result = stylize_video(client, job)
        sys.stdout.write(f"wrote {result.output} ({result.frames} frames, "
                         f"{result.fps:.2f} frames/s)\n")
    return 0
