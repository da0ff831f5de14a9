"""``robust-style export``: a trained style network to a verified ONNX file (and Triton)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from robust_style.cli.options import add_no_progress, add_trust_checkpoint, show_progress

__all__ = ["register"]

# Mirrors robust_style.export (not imported here: it pulls in torch, and --help must be fast).
_DEFAULT_OPSET = 18


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export", help="export a trained style network to ONNX (optionally a Triton entry)",
        description="Export a style network (a training run folder, its style_model.pt or a "
        "checkpoint) to one self-contained ONNX file: uint8 NHWC RGB in and out, dynamic "
        "batch/height/width, metadata inside. The file is checked (onnx.checker, then ONNX "
        "Runtime against PyTorch at several sizes) before it is written; a failed check "
        "writes nothing and exits 1. See docs/export.md.")
    p.add_argument("source", type=Path, metavar="RUN_OR_CHECKPOINT",
                   help="training run folder (uses style_model.pt, else the newest "
                        "checkpoint), or a style model / checkpoint file")
    p.add_argument("-o", "--out", "--output", dest="output", type=Path, required=True, metavar="STYLE.onnx",
                   help="the ONNX file to write")
    p.add_argument("--name", default=None,
                   help="style name stored in the file (default: the training run's name)")
    p.add_argument("--description", default="", help="free text stored in the file")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--style", default=None, metavar="NAME",
                       help="of a multi-style run, the style to export (a single-style file)")
    which.add_argument("--blend", default=None, metavar="NAME:W,NAME:W",
                       help="of a multi-style run, a blend of its styles: the norms' scales "
                       "and shifts interpolated with weights summing to 1 (Dumoulin et al. "
                       "2017), e.g. starry-night:0.7,udnie:0.3")
    p.add_argument("--fp16", action="store_true",
                   help="half-precision weights and activations (instance norms stay fp32); "
                        "for GPUs. Checked: PSNR >= --min-psnr against fp32")
    p.add_argument("--opset", type=int, default=_DEFAULT_OPSET, metavar="N",
                   help=f"ONNX opset, 18..26 (default {_DEFAULT_OPSET}: runs on the widest "
                        "range of ONNX Runtime and Triton versions)")
    p.add_argument("--triton-repo", type=Path, default=None, metavar="DIR",
                   help="also write a Triton model repository entry DIR/NAME/"
                        "{config.pbtxt,1/model.onnx}")
    p.add_argument("--triton-max-batch", type=int, default=8, metavar="N",
                   help="max_batch_size in the Triton config (default 8)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output file / Triton entry")
    p.add_argument("--verify-sizes", default=None, metavar="NxHxW,...",
                   help="batches checked against PyTorch (default 1x37x53,2x256x320,1x8x8)")
    p.add_argument("--atol", type=float, default=1e-4,
                   help="fp32: max abs difference allowed on the [0,1] scale (default 1e-4)")
    p.add_argument("--min-psnr", type=float, default=40.0, metavar="DB",
                   help="fp16: minimum PSNR against fp32 in dB (default 40)")
    add_trust_checkpoint(p, "the checkpoint")
    add_no_progress(p)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from robust_style.export.pipeline import (
        ExportOptions,
        ExportVerificationError,
        export_style_model,
    )
    from robust_style.export.verify import DEFAULT_SIZES, parse_sizes
    from robust_style.transformer_net.artifact import parse_blend

    sizes = parse_sizes(args.verify_sizes) if args.verify_sizes else DEFAULT_SIZES
    mix = {args.style: 1.0} if args.style else parse_blend(args.blend) if args.blend else None
    opts = ExportOptions(mix=mix,
        source=args.source, output=args.output, name=args.name, fp16=args.fp16,
        opset=args.opset, triton_repo=args.triton_repo, triton_max_batch=args.triton_max_batch,
        force=args.force, trust_checkpoint=args.trust_checkpoint, sizes=sizes,
        atol=args.atol, min_psnr=args.min_psnr, description=args.description,
        progress=show_progress(args) and sys.stderr.isatty())
    try:
        result = export_style_model(opts)
    except ExportVerificationError as exc:
        sys.stderr.write(f"robust-style: error: export of {args.source} failed verification; "
                         f"nothing was written\n{exc.report.summary()}\n")
        return 1
    md = result.metadata
    sys.stdout.write(
        f"wrote {result.output} ({result.size_bytes / 1e6:.1f} MB, style {md.name!r}, "
        f"{md.precision}, opset {args.opset}) in {result.seconds:.1f} s\n"
        f"{result.report.summary()}\n")
    if result.triton_entry is not None:
        sys.stdout.write(f"wrote Triton model repository entry {result.triton_entry}\n")
    return 0
