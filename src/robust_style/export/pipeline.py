"""``robust-style export`` as a library call: load, export, verify, then write.

Nothing reaches the destination before verification passed: the model is built and
checked in memory (the exact bytes that will be written), then written atomically (temp
file + rename). A failed check raises :class:`ExportVerificationError` with the figures and
leaves no new file behind; an existing file replaced with ``force`` stays as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from robust_style.contract import StyleMetadata
from robust_style.errors import UserError
from robust_style.export.metadata import build_metadata, check_name, default_name
from robust_style.export.onnx_export import DEFAULT_OPSET, build_served_model, check_opset
from robust_style.export.triton import DEFAULT_MAX_BATCH, write_triton_entry
from robust_style.export.verify import (
    DEFAULT_SIZES,
    FP16_MIN_PSNR,
    FP32_ATOL,
    VerificationReport,
    verify_onnx,
)
from robust_style.fileio import atomic_write_bytes

__all__ = ["ExportOptions", "ExportResult", "ExportVerificationError", "export_style_model"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportOptions:
    """Everything ``robust-style export`` needs; built by the CLI."""

    source: Path
    output: Path
    name: str | None = None
    fp16: bool = False
    opset: int = DEFAULT_OPSET
    triton_repo: Path | None = None
    triton_max_batch: int = DEFAULT_MAX_BATCH
    force: bool = False
    trust_checkpoint: bool = False
    sizes: tuple[tuple[int, int, int], ...] = DEFAULT_SIZES
    atol: float = FP32_ATOL
    min_psnr: float = FP16_MIN_PSNR
    description: str = ""
    progress: bool = True
    #: Of a multi-style run: ``{style: 1}`` or a blend ``{a: 0.7, b: 0.3}``.
    mix: Mapping[str, float] | None = None


@dataclass(frozen=True)
class ExportResult:
    output: Path
    triton_entry: Path | None
    metadata: StyleMetadata
    report: VerificationReport
    size_bytes: int
    seconds: float


class ExportVerificationError(Exception):
    """The exported model failed verification; ``report`` has the figures."""

    def __init__(self, report: VerificationReport) -> None:
        super().__init__("; ".join(report.failures) or "verification failed")
        self.report = report


def _preflight_output(opts: ExportOptions) -> None:
    out = opts.output
    if out.is_dir():
        raise UserError(f"output {out} is a folder; give a file name such as {out / 'style.onnx'}")
    if out.suffix.lower() != ".onnx":
        raise UserError(f"output {out} should end in .onnx")
    if out.exists() and not opts.force:
        raise UserError(f"{out} already exists; pass --force to replace it")
    if opts.triton_repo is not None and opts.triton_repo.exists() \
            and not opts.triton_repo.is_dir():
        raise UserError(f"--triton-repo {opts.triton_repo} is a file, not a folder")
    if opts.triton_max_batch < 1:
        raise UserError("--triton-max-batch must be at least 1")


def export_style_model(opts: ExportOptions) -> ExportResult:
    """Export, verify and write a style model (see the module docstring).

    Raises:
        UserError: bad input (missing or corrupt checkpoint, bad opset or name, existing
            output without ``force``), before anything is written.
        ExportVerificationError: the exported model failed a check; nothing was written.
    """
    from robust_style.transformer_net import load_style_model

    t0 = time.perf_counter()
    check_opset(opts.opset)
    _preflight_output(opts)
    if opts.name is not None:
        check_name(opts.name)
    precision = "fp16" if opts.fp16 else "fp32"
    bar = tqdm(total=4, desc="load", unit="step", disable=not opts.progress, leave=False)
    try:
        style = load_style_model(opts.source, trust=opts.trust_checkpoint, mix=opts.mix)
        mix = style.meta.get("mix") or {}
        blend = "-".join(f"{n}{round(100 * w)}" for n, w in mix.items()) if len(mix) > 1 else ""
        name = opts.name or default_name({"name": blend} if blend else style.meta, style.source)
        entry = opts.triton_repo / name if opts.triton_repo is not None else None
        if entry is not None and entry.exists() and not opts.force:
            raise UserError(f"{entry} already exists; pass --force to replace it")
        metadata, extra = build_metadata(
            style.meta, name=name, precision=precision, opset=opts.opset,
            net_config=style.net.config.to_dict(), source=style.source,
            description=opts.description)
        bar.update()
        bar.set_description(f"export ({precision}, opset {opts.opset})")
        model = build_served_model(style.net, metadata, opset=opts.opset, fp16=opts.fp16,
                                   extra=extra)
        data = model.SerializeToString()
        bar.update()
        bar.set_description("verify (onnx.checker, ONNX Runtime vs PyTorch)")
        report = verify_onnx(data, style.net, opts.sizes, precision=precision,
                             atol=opts.atol, min_psnr=opts.min_psnr)
        bar.update()
        if not report.passed:
            raise ExportVerificationError(report)
        bar.set_description("write")
        if opts.output.exists() and not opts.force:  # appeared while we worked
            raise UserError(f"{opts.output} already exists; pass --force to replace it")
        # The .onnx first, then the Triton entry (both atomic): a failed .onnx write
        # leaves nothing behind (no entry; an older file stays as it was); a failed entry
        # write leaves the complete, verified .onnx and says so.
        written = None
        try:
            out = atomic_write_bytes(opts.output, data)
        except OSError as exc:
            raise UserError(f"cannot write {opts.output}: {exc.strerror or exc}; nothing was "
                            "written") from None
        if opts.triton_repo is not None:
            try:
                written = write_triton_entry(opts.triton_repo, name, data,
                                             max_batch_size=opts.triton_max_batch,
                                             description=metadata.description, force=opts.force)
            except OSError as exc:
                raise UserError(f"wrote {out}, but cannot write the Triton entry: "
                                f"{exc.strerror or exc} ({exc.filename or opts.triton_repo})"
                                ) from None
        bar.update()
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    log.debug("exported %s (%s, %.1f MB) in %.1f s", out, precision, len(data) / 1e6, seconds)
    return ExportResult(out, written, metadata, report, len(data), seconds)
