"""Export a :class:`~robust_style.transformer_net.TransformerNet` to ONNX.

The served graph follows :mod:`robust_style.contract`: ``uint8`` NHWC RGB in, ``uint8``
NHWC RGB out, dynamic batch, height and width.

How it is built (export once, compose, verify the file that ships):

1. :func:`export_core` exports the float network itself (``float32`` NCHW in ``[0,1]``,
   dynamic N/H/W) with the dynamo exporter (``torch.onnx.export(dynamo=True)``), weights
   inside the proto. Its input and output keep the names :data:`CORE_INPUT` and
   :data:`CORE_OUTPUT`.
2. :func:`compose_serving` wraps that core with plain ONNX nodes (``onnx.helper``) doing
   exactly what :class:`ServingWrapper` does in PyTorch: ``Transpose -> Cast -> Div 255``
   before, ``Clip [0,1] -> Mul 255 -> Round -> Cast uint8 -> Transpose`` after. ONNX
   ``Round`` rounds half to even like ``torch.round`` (ONNX operator spec, Round).
3. The core's float output survives as a named tensor inside the served graph, so
   :mod:`robust_style.export.verify` can check the float network to 1e-4 *and* the uint8
   output to 1 LSB on the very file that is shipped.

``--fp16`` converts only the core (:mod:`robust_style.export.fp16`) before step 2, so the
uint8 interface is identical for both precisions.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from robust_style import __version__, fileio
from robust_style.contract import INPUT_NAME, OUTPUT_NAME, StyleMetadata
from robust_style.errors import UserError

__all__ = [
    "CORE_INPUT",
    "CORE_OUTPUT",
    "DEFAULT_OPSET",
    "MAX_OPSET",
    "MIN_OPSET",
    "ServingWrapper",
    "build_served_model",
    "check_opset",
    "compose_serving",
    "export_core",
    "export_onnx",
    "set_metadata",
]

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18
#: The dynamo exporter's lowest opset: asked for less, torch silently writes opset 18.
MIN_OPSET = 18
#: Highest opset tested end to end (export, ``onnx.checker`` full check, ONNX Runtime
#: 1.31 parity). Newer runtimes are needed for newer opsets; 18 runs on ORT >= 1.14.
MAX_OPSET = 26

#: Names of the float network's input and output inside the served graph.
CORE_INPUT = "rs_core_input"
CORE_OUTPUT = "rs_core_output"

_EXAMPLE_SHAPE = (1, 3, 64, 96)


class ServingWrapper(nn.Module):
    """``uint8 NHWC`` in -> network on ``[0,1] NCHW`` -> ``uint8 NHWC`` out (rounded).

    The PyTorch reference of the served graph (see :func:`compose_serving`).
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    @staticmethod
    def preprocess(image: torch.Tensor) -> torch.Tensor:
        """``uint8 [N,H,W,3]`` -> ``float32 [N,3,H,W]`` in ``[0,1]``."""
        return image.permute(0, 3, 1, 2).float() / 255.0

    @staticmethod
    def postprocess(y: torch.Tensor) -> torch.Tensor:
        """``float [N,3,H,W]`` -> ``uint8 [N,H,W,3]``, clipped and rounded half to even."""
        return torch.round(y.clamp(0.0, 1.0) * 255.0).to(torch.uint8).permute(0, 2, 3, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.postprocess(self.net(self.preprocess(image)))


def check_opset(opset: int) -> None:
    """Raise :class:`UserError` for an opset outside ``MIN_OPSET..MAX_OPSET``."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UserError(f"unsupported ONNX opset {opset}: use {MIN_OPSET}..{MAX_OPSET} "
                        f"(default {DEFAULT_OPSET})")


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """The exporter's optimiser logs every pass at INFO; keep that out of the CLI output."""
    loggers = [logging.getLogger(n) for n in names]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(logging.WARNING, lg.getEffectiveLevel()))
    try:
        yield
    finally:
        for lg, level in zip(loggers, before, strict=True):
            lg.setLevel(level)


def export_core(net: nn.Module, opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """The float network as ONNX: ``float32 [N,3,H,W]`` in ``[0,1]`` -> same shape.

    Uses the dynamo exporter with dynamic batch, height and width. The exporter's
    per-node debug metadata (Python stack traces, FX names) is dropped: it bloats the
    file and names paths of the exporting machine.
    """
    from torch.export import Dim

    check_opset(opset)
    net = net.eval().cpu()
    example = torch.rand(*_EXAMPLE_SHAPE, generator=torch.Generator().manual_seed(0))
    dims = {0: Dim("batch"), 2: Dim("height"), 3: Dim("width")}
    sink = io.StringIO()
    with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(sink), \
            _quiet_loggers("onnxscript", "onnx_ir", "torch.onnx", "torch.export"):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net, (example,), dynamo=True, external_data=False, opset_version=opset,
            input_names=[CORE_INPUT], output_names=[CORE_OUTPUT],
            dynamic_shapes=(dims,), verbose=False,
        )
    if sink.getvalue().strip():
        log.debug("torch.onnx.export said:\n%s", sink.getvalue())
    if program is None:  # dynamo=True always returns an ONNXProgram
        raise RuntimeError("torch.onnx.export returned no ONNXProgram")
    model = program.model_proto
    got = {o.domain: o.version for o in model.opset_import}.get("", 0)
    if got != opset:
        raise RuntimeError(f"asked torch.onnx.export for opset {opset}, got {got}")
    for node in model.graph.node:
        del node.metadata_props[:]
    for vi in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        del vi.metadata_props[:]
    return model


def compose_serving(core: onnx.ModelProto) -> onnx.ModelProto:
    """Wrap the float core in the uint8 NHWC contract (see the module docstring)."""
    g = core.graph
    if [i.name for i in g.input] != [CORE_INPUT] or [o.name for o in g.output] != [CORE_OUTPUT]:
        raise ValueError(f"core graph must have input {CORE_INPUT!r} and output {CORE_OUTPUT!r}")
    if g.input[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ValueError("core graph input must be float32 (fp16 cores keep float32 I/O)")
    f32 = np.float32
    consts = [
        numpy_helper.from_array(np.array(255.0, f32), "rs_const_255"),
        numpy_helper.from_array(np.array(0.0, f32), "rs_const_0"),
        numpy_helper.from_array(np.array(1.0, f32), "rs_const_1"),
    ]
    pre = [
        helper.make_node("Transpose", [INPUT_NAME], ["rs_nchw_u8"], name="rs_to_nchw",
                         perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["rs_nchw_u8"], ["rs_nchw_f32"], name="rs_to_float",
                         to=TensorProto.FLOAT),
        helper.make_node("Div", ["rs_nchw_f32", "rs_const_255"], [CORE_INPUT], name="rs_scale_in"),
    ]
    post = [
        helper.make_node("Clip", [CORE_OUTPUT, "rs_const_0", "rs_const_1"], ["rs_clipped"],
                         name="rs_clip"),
        helper.make_node("Mul", ["rs_clipped", "rs_const_255"], ["rs_scaled"], name="rs_scale_out"),
        helper.make_node("Round", ["rs_scaled"], ["rs_rounded"], name="rs_round"),
        helper.make_node("Cast", ["rs_rounded"], ["rs_nchw_out_u8"], name="rs_to_uint8",
                         to=TensorProto.UINT8),
        helper.make_node("Transpose", ["rs_nchw_out_u8"], [OUTPUT_NAME], name="rs_to_nhwc",
                         perm=[0, 2, 3, 1]),
    ]
    nhwc: list[str | int] = ["batch", "height", "width", 3]
    graph = helper.make_graph(
        [*pre, *g.node, *post],
        "robust_style_served",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, nhwc)],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.UINT8, nhwc)],
        initializer=[*g.initializer, *consts],
        value_info=[
            helper.make_tensor_value_info(CORE_INPUT, TensorProto.FLOAT,
                                          ["batch", 3, "height", "width"]),
            helper.make_tensor_value_info(CORE_OUTPUT, TensorProto.FLOAT,
                                          ["batch", 3, "height", "width"]),
            *[vi for vi in g.value_info if vi.name not in (CORE_INPUT, CORE_OUTPUT)],
        ],
    )
    graph.sparse_initializer.extend(g.sparse_initializer)
    model = helper.make_model(graph, opset_imports=list(core.opset_import),
                              ir_version=core.ir_version)
    model.functions.extend(core.functions)
    model.producer_name = "robust-style"
    model.producer_version = __version__
    return model


def set_metadata(model: onnx.ModelProto, metadata: StyleMetadata,
                 extra: dict[str, str] | None = None) -> None:
    """Replace the model's ``robust_style.*`` metadata_props with ``metadata`` (+ ``extra``)."""
    props = {**metadata.to_props(), **(extra or {})}
    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    model.producer_name = "robust-style"
    model.doc_string = metadata.description or f"robust-style style model {metadata.name!r}"


def export_onnx(net: nn.Module, out_path: str | Path, metadata: StyleMetadata,
                opset: int = DEFAULT_OPSET, fp16: bool = False) -> Path:
    """Export ``net`` as a served style model file, without verification.

    :func:`robust_style.export.pipeline.export_style_model` is the checked path (it
    verifies before the file appears); this is the bare building block.
    """
    model = build_served_model(net, metadata, opset=opset, fp16=fp16)
    out = fileio.atomic_write_bytes(out_path, model.SerializeToString())
    log.info("exported %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return out


def build_served_model(net: nn.Module, metadata: StyleMetadata, opset: int = DEFAULT_OPSET,
                       fp16: bool = False, extra: dict[str, str] | None = None
                       ) -> onnx.ModelProto:
    """Core export -> optional fp16 conversion -> uint8 wrapping -> metadata."""
    core = export_core(net, opset)
    if fp16:
        from robust_style.export.fp16 import convert_core_to_fp16

        core = convert_core_to_fp16(core)
    model = compose_serving(core)
    set_metadata(model, metadata, extra)
    return model
