"""``robust-style stylize``: stylise image files or folders, locally or through a server.

``--model STYLE.onnx`` (or a folder of models) runs on this machine with the server's own
loading, engines and image code (:class:`robust_style.server.local.LocalStylizer`); without
it the images go to ``robust-style serve`` at ``--server``. Both are a *backend* with
``list_styles()`` and ``stylize()``: :func:`open_backend` picks one, :func:`pick_style`
the style, :func:`stylize_files` writes the results.
"""

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

__all__ = ["register", "collect_inputs", "check_output_names", "open_backend", "pick_style",
           "stylize_files"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "stylize", help="stylise images and videos, locally (--model) or through a server",
        description="Stylise image files (or every image in folders, recursively) and write "
        "them to OUT_DIR as NAME_STYLE.png (or .jpg). With --model STYLE.onnx (or a folder "
        "of models) it runs here, on the same engines as the server; otherwise it sends "
        "the images to `robust-style serve` (--server). Videos, animated GIF/WebP and frame "
        "folders are stylised frame by frame, keeping the frame rate and the audio track: "
        "`stylize clip.mp4 --style S -o out.mp4`.")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image files or folders")
    p.add_argument("--model", type=Path, default=None, metavar="MODEL",
                   help="run locally with this style model file (.onnx) or folder of them; "
                   "no server needed")
    p.add_argument("--engine", choices=["auto", "onnxruntime", "openvino"], default="auto",
                   help="with --model: inference engine (as `serve --engine`)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="with --model: precision (as `serve --precision`)")
    p.add_argument("--style", default=None,
                   help="style name (see `robust-style styles`; optional if there is one)")
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


def open_backend(args: argparse.Namespace):
    """A :class:`LocalStylizer` for ``--model``, else a client of ``--server``."""
    if args.model is None:
        return connect(args)
    if args.server is not None:
        raise UserError("use --model (run here) or --server (send to a server), not both")
    from robust_style.server.engines import EngineConfig
    from robust_style.server.local import LocalStylizer

    return LocalStylizer(args.model, EngineConfig(engine=args.engine, precision=args.precision))


def pick_style(backend, style: str | None) -> str:
    """``style``, or the only style there is; checked usable as part of file names."""
    if style is None:
        names = [s.name for s in backend.list_styles()]
        if len(names) != 1:
            raise UserError(f"--style is needed; {backend.where} has: "
                            f"{', '.join(names) or 'none'}")
        style = names[0]
    if not valid_style_name(style):  # it becomes part of the output file names
        raise UserError(f"unusable style name {style!r}: style names are letters, digits, "
                        "'_', '.', '-'")
    return style


def _per_file(exc: Exception) -> bool:
    """True if ``exc`` concerns one input only (report it, go on with the others)."""
    from robust_style.imageio import ImageError
    from robust_style.server.client import ClientError

    if isinstance(exc, ClientError):
        return exc.code is not None and exc.code.name not in ("UNAVAILABLE", "NOT_FOUND",
                                                              "UNAUTHENTICATED")
    return isinstance(exc, ImageError)


def stylize_files(backend, files: list[tuple[Path, Path]], style: str,
                  args: argparse.Namespace) -> tuple[int, int]:
    """Stylise and write every file; (written, failed)."""
    from tqdm import tqdm

    ext = ".jpg" if args.format == "jpeg" else ".png"
    written = failed = 0
    for path, rel in tqdm(files, desc=f"stylize ({style})", unit="img", disable=len(files) < 2):
        try:
            res = backend.stylize(path, style, strength=args.strength,
                                  preserve_color=args.preserve_color, max_side=args.max_side,
                                  format=args.format, quality=args.quality)
        except Exception as exc:
            if not _per_file(exc):
                raise
            sys.stderr.write(f"robust-style: {path}: {exc}\n")
            failed += 1
            continue
        atomic_write_bytes(args.out / rel.parent / f"{rel.stem}_{style}{ext}", res.image)
        written += 1
    return written, failed


def run(args: argparse.Namespace) -> int:
    if args.strength is not None and not 0.0 <= args.strength <= 1.0:
        raise UserError(f"--strength must be in [0, 1], got {args.strength}")
    if args.max_side < 0:
        raise UserError(f"--max-side must be 0 (keep) or a positive size, got {args.max_side}")
    if not 1 <= args.quality <= 100:
        raise UserError(f"--quality must be 1..100, got {args.quality}")
    video = stylize_video.wanted(args)
    files = [] if video else list(dict.fromkeys(collect_inputs(args.inputs)))  # dupes: once
    check_output_names(files)
    with open_backend(args) as backend:
        style = pick_style(backend, args.style)
        if video:
            return stylize_video.run(args, backend, style)
        written, failed = stylize_files(backend, files, style, args)
    sys.stdout.write(f"wrote {written} image(s) to {args.out.resolve()}"
                     + (f"; {failed} failed" if failed else "") + "\n")
    return 1 if failed else 0
