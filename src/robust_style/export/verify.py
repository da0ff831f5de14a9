"""Check an exported style model against the PyTorch network it came from.

:func:`verify_onnx` runs, on the file as it will be shipped:

* ``onnx.checker.check_model(full_check=True)`` (structure plus strict shape inference);
* the tensor contract of :mod:`robust_style.contract` (one ``uint8 [N,H,W,3]`` input
  and output with the contract's names);
* every ``InstanceNormalization`` runs on float32 (see :mod:`robust_style.export.fp16`);
* ONNX Runtime against PyTorch at several sizes, odd ones included. Two outputs are
  compared: the float network's output, which the exporter keeps as the named tensor
  :data:`~robust_style.export.onnx_export.CORE_OUTPUT` inside the served graph (exposed
  as an extra graph output), against ``net(x)``; and the served ``uint8`` output against
  :class:`~robust_style.export.onnx_export.ServingWrapper`.

Bounds: fp32, float max abs difference <= ``atol`` (1e-4 on the [0, 1] scale), uint8 at
most 1 LSB anywhere (a 1e-6 float difference can flip a value sitting on a rounding
boundary) and at least ``min_exact`` of the values identical; fp16, PSNR >= ``min_psnr``
(40 dB) against the fp32 PyTorch output, float and uint8 alike.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from robust_style.contract import INPUT_NAME, MIN_SIDE, OUTPUT_NAME, parse_dims
from robust_style.errors import UserError, first_line
from robust_style.export.fp16 import op_input_types
from robust_style.export.onnx_export import CORE_OUTPUT, ServingWrapper
from robust_style.imageio import cover_crop
from robust_style.pixels import psnr

__all__ = [
    "DEFAULT_SIZES",
    "FP16_MIN_PSNR",
    "FP32_ATOL",
    "MIN_EXACT_FRACTION",
    "SizeResult",
    "VerificationReport",
    "parse_sizes",
    "psnr",
    "verify_onnx",
]

log = logging.getLogger(__name__)

#: ``(N, H, W)`` batches checked by default: odd sizes, a realistic one, the smallest.
DEFAULT_SIZES: tuple[tuple[int, int, int], ...] = ((1, 37, 53), (2, 256, 320), (1, 8, 8))
FP32_ATOL = 1e-4
FP16_MIN_PSNR = 40.0
MIN_EXACT_FRACTION = 0.99


@dataclass(frozen=True)
class SizeResult:
    """Figures for one batch shape (``shape`` is NCHW, as the float network sees it)."""

    shape: tuple[int, int, int, int]
    float_max_abs: float | None
    float_psnr_db: float | None
    uint8_max_lsb: int
    uint8_exact_fraction: float
    uint8_psnr_db: float

    @property
    def label(self) -> str:
        return "x".join(map(str, self.shape))


@dataclass(frozen=True)
class VerificationReport:
    """What :func:`verify_onnx` found; ``passed`` when ``failures`` is empty."""

    precision: str
    results: tuple[SizeResult, ...] = ()
    failures: tuple[str, ...] = ()
    checks: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.failures

    def table(self) -> str:
        """The per-size figures as an aligned text table."""
        rows = [f"{'NCHW':<14}{'float max|d|':>14}{'float PSNR':>12}{'uint8 max':>11}"
                f"{'exact %':>10}{'uint8 PSNR':>12}"]
        for r in self.results:
            fmax = "n/a" if r.float_max_abs is None else f"{r.float_max_abs:.2e}"
            fpsnr = "n/a" if r.float_psnr_db is None else _db(r.float_psnr_db)
            rows.append(f"{r.label:<14}{fmax:>14}{fpsnr:>12}{r.uint8_max_lsb:>11d}"
                        f"{100 * r.uint8_exact_fraction:>10.3f}{_db(r.uint8_psnr_db):>12}")
        return "\n".join(rows)

    def summary(self) -> str:
        head = f"verification {'passed' if self.passed else 'FAILED'} ({self.precision})"
        lines = [head, *[f"  ok: {c}" for c in self.checks],
                 *[f"  FAIL: {f}" for f in self.failures], self.table()]
        return "\n".join(lines)


def _db(value: float) -> str:
    return "inf dB" if math.isinf(value) else f"{value:.1f} dB"


def parse_sizes(text: str) -> tuple[tuple[int, int, int], ...]:
    """``"1x37x53,2x256x320"`` (N x H x W; ``1x3x37x53`` NCHW also accepted)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            nums = list(parse_dims(part))
        except ValueError:
            nums = []
        if len(nums) == 4 and nums[1] == 3:
            nums = [nums[0], nums[2], nums[3]]
        if len(nums) != 3 or nums[0] < 1 or min(nums[1:]) < MIN_SIDE:
            raise UserError(f"bad size {part!r}: use NxHxW with N >= 1 and sides >= {MIN_SIDE}, "
                            "e.g. 1x37x53,2x256x320")
        out.append((nums[0], nums[1], nums[2]))
    if not out:
        raise UserError("no sizes given to verify; e.g. --verify-sizes 1x37x53,2x256x320")
    return tuple(out)


def _synthetic(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth colour gradients, hard-edged blocks and noise: a stand-in for a photo."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) / max(h, w)
    ph = rng.uniform(0, 2 * np.pi, 3)
    img = 0.5 + 0.35 * np.stack([np.sin(7 * xx + ph[0]), np.cos(5 * yy + ph[1]),
                                 np.sin(4 * (xx + yy) + ph[2])], axis=-1)
    for _ in range(4):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        img[y0:y0 + h // 3 + 1, x0:x0 + w // 3 + 1] = rng.uniform(0, 1, 3)
    img += rng.normal(0.0, 0.06, img.shape)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def _batch(n: int, h: int, w: int, images: Sequence[np.ndarray] | None,
           rng: np.random.Generator, offset: int) -> np.ndarray:
    if images:
        return np.stack([cover_crop(images[(offset + i) % len(images)], h, w) for i in range(n)])
    return np.stack([_synthetic(h, w, rng) for _ in range(n)])


def _contract_problems(model: onnx.ModelProto) -> list[str]:
    problems = []
    for kind, values, name in (("input", model.graph.input, INPUT_NAME),
                               ("output", model.graph.output, OUTPUT_NAME)):
        if len(values) != 1 or values[0].name != name:
            problems.append(f"expected one {kind} named {name!r}, got "
                            f"{[v.name for v in values]}")
            continue
        tt = values[0].type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        if tt.elem_type != TensorProto.UINT8 or len(dims) != 4 or dims[3] != 3 \
                or any(d != -1 for d in dims[:3]):
            problems.append(f"{kind} {name!r} must be uint8 [N,H,W,3] with dynamic N, H, W; "
                            f"got {TensorProto.DataType.Name(tt.elem_type)} {dims}")
    return problems


def _session(model: onnx.ModelProto, providers: Sequence[str]):
    """One ONNX Runtime session on the model, with the float core's output exposed.

    The graph is the shipped one plus one extra graph output (:data:`CORE_OUTPUT`), so
    a single run yields both the float network's output and the served uint8 output.
    Returns ``(session, has_core)``.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    produced = {o for n in model.graph.node for o in n.output}
    has_core = CORE_OUTPUT in produced
    if has_core:
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        probe.graph.output.append(helper.make_tensor_value_info(
            CORE_OUTPUT, TensorProto.FLOAT, ["batch", 3, "height", "width"]))
        model = probe
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=list(providers)), has_core


def verify_onnx(model: str | Path | bytes | onnx.ModelProto, net: nn.Module,
                sizes: Sequence[tuple[int, int, int]] = DEFAULT_SIZES, *,
                precision: str | None = None, images: Sequence[np.ndarray] | None = None,
                atol: float = FP32_ATOL, min_psnr: float = FP16_MIN_PSNR,
                min_exact: float = MIN_EXACT_FRACTION,
                providers: Sequence[str] = ("CPUExecutionProvider",),
                seed: int = 0) -> VerificationReport:
    """Verify a served style model against ``net`` (float ``[0,1]`` NCHW network).

    Args:
        model: the ONNX file (path, bytes or proto).
        net: the PyTorch network the file was exported from (run on CPU, fp32).
        sizes: ``(N, H, W)`` batches to compare.
        precision: ``"fp32"`` or ``"fp16"``; default: the file's ``robust_style.precision``.
        images: real ``HxWx3 uint8`` photos to resize/crop to each size; default
            deterministic synthetic images (gradients, blocks, noise).
        atol, min_psnr, min_exact: the bounds (see the module docstring).
        providers: ONNX Runtime execution providers (CPU by default).
    """
    if isinstance(model, (str, Path)):
        model = onnx.load(str(model))
    elif isinstance(model, bytes):
        model = onnx.load_from_string(model)
    props = {p.key: p.value for p in model.metadata_props}
    precision = precision or props.get("robust_style.precision", "fp32")
    checks: list[str] = []
    failures: list[str] = []
    try:
        onnx.checker.check_model(model, full_check=True)
        checks.append("onnx.checker (full check)")
    except Exception as exc:
        failures.append(f"onnx.checker: {first_line(exc)}")
    contract = _contract_problems(model)
    failures += contract
    if not contract:
        checks.append("tensor contract: uint8 NHWC in and out, dynamic N/H/W")
    norms = op_input_types(model, "InstanceNormalization")
    bad = [name for name, t in norms if t != TensorProto.FLOAT]
    if bad:
        failures.append(f"{len(bad)}/{len(norms)} InstanceNormalization nodes do not run in "
                        f"float32 ({', '.join(bad[:3])})")
    else:
        checks.append(f"{len(norms)} InstanceNormalization nodes run in float32")
    if contract:
        return VerificationReport(precision, (), tuple(failures), tuple(checks))

    sess, has_core = _session(model, providers)
    net = net.eval().cpu().float()
    rng = np.random.default_rng(seed)
    results = []
    for k, (n, h, w) in enumerate(sizes):
        batch = _batch(n, h, w, images, rng, offset=k)
        with torch.no_grad():  # ServingWrapper's steps, sharing one forward pass
            y = net(ServingWrapper.preprocess(torch.from_numpy(batch)))
            ref_u8 = ServingWrapper.postprocess(y).numpy()
            ref_f = y.numpy()
        outs = sess.run([OUTPUT_NAME, CORE_OUTPUT] if has_core else [OUTPUT_NAME],
                        {INPUT_NAME: batch})
        out_u8 = outs[0]
        label = f"{n}x3x{h}x{w}"
        if out_u8.shape != batch.shape or out_u8.dtype != np.uint8:
            failures.append(f"{label}: output {out_u8.dtype} {out_u8.shape}, expected uint8 "
                            f"{batch.shape}")
            continue
        fmax = fpsnr = None
        if has_core:
            out_f = outs[1]
            fmax = float(np.max(np.abs(out_f.astype(np.float64) - ref_f)))
            fpsnr = psnr(out_f, ref_f, 1.0)
        diff = np.abs(out_u8.astype(np.int16) - ref_u8.astype(np.int16))
        r = SizeResult((n, 3, h, w), fmax, fpsnr, int(diff.max()), float(np.mean(diff == 0)),
                       psnr(out_u8, ref_u8, 255.0))
        results.append(r)
        log.debug("verify %s: %s", label, r)
        if precision == "fp16":
            if fpsnr is not None and fpsnr < min_psnr:
                failures.append(f"{label}: float PSNR {fpsnr:.1f} dB < {min_psnr:g} dB")
            if r.uint8_psnr_db < min_psnr:
                failures.append(f"{label}: uint8 PSNR {r.uint8_psnr_db:.1f} dB < {min_psnr:g} dB")
        else:
            if fmax is not None and fmax > atol:
                failures.append(f"{label}: float max abs diff {fmax:.3g} > {atol:g}")
            if r.uint8_max_lsb > 1:
                failures.append(f"{label}: uint8 differs by {r.uint8_max_lsb} LSB (max 1)")
            if r.uint8_exact_fraction < min_exact:
                failures.append(f"{label}: only {100 * r.uint8_exact_fraction:.2f}% of uint8 "
                                f"values exact (min {100 * min_exact:g}%)")
    if not has_core:
        checks.append(f"no {CORE_OUTPUT!r} tensor in the file (not written by robust-style "
                      "export?): compared the uint8 output only")
    if not failures:
        checks.append(f"ONNX Runtime vs PyTorch at {', '.join(r.label for r in results)}")
    return VerificationReport(precision, tuple(results), tuple(failures), tuple(checks))
