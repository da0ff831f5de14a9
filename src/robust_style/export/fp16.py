"""Half-precision conversion of the float core, keeping instance normalisation in fp32.

fp16 ``InstanceNormalization`` is a known failure in ONNX Runtime and TensorRT: the
per-channel mean and variance over ``H*W`` pixels lose precision or overflow in half
precision (the largest fp16 value is 65504), and the op is cheap next to the convolutions. So the converter (``onnxconverter_common.float16``, the converter ONNX
Runtime's own docs point to) runs with ``InstanceNormalization`` on its op block list: those
nodes, their scale and bias stay float32 and Cast nodes are inserted around them. The
core's input and output stay float32 (``keep_io_types``), so the uint8 wrapping of
:func:`robust_style.export.onnx_export.compose_serving` is the same for both precisions.

On the CPU execution provider, ONNX Runtime runs fp16 nodes that lack an fp16 kernel in
fp32 (it inserts casts itself), so an fp16 file is for GPUs; on CPU it only costs the
weight rounding.
"""

from __future__ import annotations

import warnings

import onnx

__all__ = ["FP32_OPS", "convert_core_to_fp16", "op_input_types"]

#: Ops kept in float32. ``Resize`` is on the converter's default list (its ``scales``
#: input must stay float32); ``InstanceNormalization`` for numerical soundness.
FP32_OPS = ("InstanceNormalization", "Resize")


def convert_core_to_fp16(core: onnx.ModelProto) -> onnx.ModelProto:
    """fp16 weights and activations except in :data:`FP32_OPS`; float32 I/O."""
    from onnxconverter_common import float16

    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS))
    with warnings.catch_warnings():
        # "the float32 number 1e-9 will be truncated to 1e-7": tiny weights, harmless.
        warnings.simplefilter("ignore", UserWarning)
        return float16.convert_float_to_float16(core, keep_io_types=True, op_block_list=block)


def op_input_types(model: onnx.ModelProto, op_type: str) -> list[tuple[str, int]]:
    """``(node name, elem type of its first input)`` for every ``op_type`` node.

    Types come from ONNX shape inference; 0 means unknown.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in [*g.value_info, *g.input, *g.output]}
    types.update({init.name: init.data_type for init in g.initializer})
    return [(n.name, types.get(n.input[0], 0)) for n in g.node if n.op_type == op_type]
