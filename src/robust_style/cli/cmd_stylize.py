"""``robust-style stylize``: stylise image files or folders through a running server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robust_style.cli import stylize_video
from robust_style.cli.cmd_styles import add_connection_args, connect
from robust_style.contract import valid_style_name
from robust_style.errors import UserError
from robust_style.fileio import atomic_write_bytes
from robust_style.imageio import IMAGE_SUFFIXES, is_image_file

__all__ = ["register", "collect_inputs", "check_output_names"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "stylize", help="stylise images through a running server",
        description="Send image files (or every JPEG/PNG/WebP in folders, recursively) to "
        "`robust-style serve` and write the stylised images to OUT_DIR as "
        "NAME_STYLE.png (or .jpg). Videos, animated GIF/WebP and frame folders are streamed "
        "frame by frame, keeping the frame rate and the audio track: "
        "`stylize clip.mp4 --style S -o out.mp4`.")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders")
    p.add_argument("--style", default=None,
                   help="style name (see `robust-style styles`; optional if the server has one)")
    p.add_argument("-o", "--out", type=Path, default=Path("."), metavar="OUT_DIR",
                   help="output folder (default: the current folder), or one video or "
                   "animation file")
    p.add_argument("--strength", type=float, default=None,
                   help="0..1 blend with the photo (default 1 = fully stylised)")
    p.add_argument("--preserve-color", action="store_true",
                   help="keep the photo's colours (luminance-only transfer)")
    p.add_argument("--max-side", type=int, default=0,
                   help="downscale so the longer side is at most this (0 = keep)")
    p.add_argument("--format", choices=["png", "jpeg"], default="png", help="output format")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality 1..100")
    stylize_video.add_arguments(p)
    add_connection_args(p)
    p.set_defaults(handler=run)


def collect_inputs(inputs: list[Path]) -> list[tuple[Path, Path]]:
    """(file, path relative to its input root) for every image; folders are searched."""
    out: list[tuple[Path, Path]] = []
    for item in inputs:
        if item.is_dir():
            for f in sorted(item.rglob("*")):
                if f.is_file() and is_image_file(f):
                    out.append((f, f.relative_to(item)))
        elif item.is_file():
            out.append((item, Path(item.name)))
        else:
            raise UserError(f"no such file or folder: {item}")
    if not out:
        raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the given inputs")
    return out


def check_output_names(files: list[tuple[Path, Path]]) -> None:
    """Refuse inputs that would be written to the same output name (one would be lost)."""
    seen: dict[Path, Path] = {}
    for path, rel in files:
        key = rel.parent / rel.stem
        other = seen.setdefault(key, path)
        if other != path:
            raise UserError(f"{other} and {path} would both be written as {key}_STYLE; "
                            "stylise them in separate runs or rename one")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from robust_style.server.client import ClientError

    if args.strength is not None and not 0.0 <= args.strength <= 1.0:
        raise UserError(f"--strength must be in [0, 1], got {args.strength}")
    if args.max_side < 0:
        raise UserError(f"--max-side must be 0 (keep) or a positive size, got {args.max_side}")
    if not 1 <= args.quality <= 100:
        raise UserError(f"--quality must be 1..100, got {args.quality}")
    video = stylize_video.wanted(args)
    files = [] if video else list(dict.fromkeys(collect_inputs(args.inputs)))  # dupes: once
    check_output_names(files)
    ext = ".jpg" if args.format == "jpeg" else ".png"
    failed = 0
    with connect(args) as client:
        style = args.style
        if style is None:
            names = [s.name for s in client.list_styles()]
            if len(names) != 1:
                raise UserError(f"--style is needed; the server has: {', '.join(names) or 'none'}")
            style = names[0]
        if not valid_style_name(style):  # it becomes part of the output file names
            raise UserError(f"unusable style name {style!r}: style names are letters, digits, "
                            "'_', '.', '-'")
        if video:
            return stylize_video.run(args, client, style)
        written = 0
        for path, rel in tqdm(files, desc=f"stylize ({style})", unit="img",
                              disable=len(files) < 2):
            try:
                res = client.stylize(path, style, strength=args.strength,
                                     preserve_color=args.preserve_color, max_side=args.max_side,
                                     format=args.format, quality=args.quality)
            except ClientError as exc:
                if exc.code is None or exc.code.name in ("UNAVAILABLE", "NOT_FOUND",
                                                         "UNAUTHENTICATED"):
                    raise
                sys.stderr.write(f"robust-style: {path}: {exc}\n")
                failed += 1
                continue
            target = args.out / rel.parent / f"{rel.stem}_{style}{ext}"
            atomic_write_bytes(target, res.image)
            written += 1
    sys.stdout.write(f"wrote {written} image(s) to {args.out.resolve()}"
                     + (f"; {failed} failed" if failed else "") + "\n")
    return 1 if failed else 0
