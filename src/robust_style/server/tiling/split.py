"""Split a style model's ONNX graph at its instance norms into layer groups (segments).

Instance normalisation (Ulyanov et al. 2016) normalises each channel over the whole image,
so a tile run on its own gets its own statistics and visible seams. The exact tiled run
(:mod:`.exact`) therefore runs the network one *layer group* at a time over the whole
image: segment ``k`` computes the input of norm ``k`` (a convolution's raw output) from
the tensors of earlier segments, with every earlier norm replaced by the per-channel
affine map ``x * mul + add`` whose ``mul``/``add`` come from whole-image statistics
(segment inputs ``rs_norm{j}_mul``/``rs_norm{j}_add``). The last segment computes the
model's output.

The split is derived at load from the graph as the exporter wrote it (ONNX
``InstanceNormalization`` ops), so files exported before work as they are. What a segment
needs is cut backwards from its target, stopping at the tensors kept between segments:

* the targets (norm inputs) and the model input;
* spatial tensors that a later segment consumes but that this segment computes (the
  residual skip connections), kept as extra outputs ("carried" tensors), so nothing is
  computed twice but halos and cheap pointwise or shape arithmetic.

Tiling needs each tensor's scale against the network's working resolution and each
segment's receptive radius. Scales come from one probe run of the whole graph (all
spatial tensors as outputs) at a small odd size; the radius from each segment's
convolutions (``ceil((k - 1) * dilation / 2)`` input pixels each, times the input's scale).
A graph with an op whose reach the splitter does not know (pooling, linear resize, ...)
is not split: :class:`NotTileable` says why and the model is served untiled.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from robust_style.contract import INPUT_NAME, OUTPUT_NAME

__all__ = ["NotTileable", "Segment", "SplitModel", "split_model", "NORM_OP"]

NORM_OP = "InstanceNormalization"
#: Suffix of a segment's float16 input/output for a float tensor.
_HALF = "__f16"

#: Ops that map each pixel to itself (or work on shape values): no spatial reach.
_POINTWISE = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "Tanh", "HardSigmoid", "Softplus",
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Neg", "Exp", "Log", "Abs", "Clip", "Round",
    "Floor", "Ceil", "Cast", "Identity", "Erf", "Mod", "Max", "Min", "Where", "Equal",
})
#: Ops on shapes (never on pixels).
_SHAPE = frozenset({"Shape", "Squeeze", "Unsqueeze", "Reshape", "Concat", "Gather",
                    "Constant", "ConstantOfShape", "Range", "Expand"})
#: Spatial ops the splitter knows: Conv (reach from its kernel), Pad (a border op: its
#: reflected pixels at a tile's inner edge land in the halo, which is cropped), nearest
#: Resize (an index map), Slice (the final crop back to the input size), Transpose (the
#: NHWC<->NCHW of the contract).
_SPATIAL = frozenset({"Conv", "Pad", "Resize", "Slice", "Transpose"})


class NotTileable(ValueError):
    """The graph cannot be split for exact tiling (the reason is the message)."""


@dataclass(frozen=True)
class Segment:
    """One layer group, as an ONNX model of its own."""

    model: bytes
    #: Spatial inputs (model input or tensors kept by earlier segments), in feed order.
    inputs: tuple[str, ...]
    #: The segment model's input name of each of ``inputs`` (float16 ones are renamed).
    feeds: tuple[str, ...]
    #: Indices of the norms whose ``mul``/``add`` this segment takes.
    norms: tuple[int, ...]
    #: Outputs: the target first, then carried tensors.
    outputs: tuple[str, ...]
    #: Receptive radius in working-resolution pixels (before rounding to the alignment).
    radius: int


@dataclass(frozen=True)
class SplitModel:
    """A model as segments, with what the tiler needs to know about its tensors."""

    segments: tuple[Segment, ...]
    #: Norm ``k``: (epsilon, scale, bias) as float64 arrays of its channels.
    norms: tuple[tuple[float, np.ndarray, np.ndarray], ...]
    #: Tensor -> its pixel size in working-resolution pixels (1, 2, 4, ...).
    scale: dict[str, int]
    #: Tensor -> channels (kept tensors and outputs).
    channels: dict[str, int]
    #: Tensor -> numpy dtype of its values as segments take and give them (and buffers hold).
    dtype: dict[str, np.dtype]
    #: Working resolution is the input rounded up to a multiple of this (largest scale).
    align: int
    #: Segment index after which each kept tensor is no longer needed.
    last_use: dict[str, int]
    #: Fused groups: the segments ``k..m`` of one resolution band as one graph with their
    #: inner norms as real ``InstanceNormalization`` ops, run on the whole image at once
    #: (exact: a whole-image norm is what the network computes) where its memory fits;
    #: ``(k, m) -> (segment, bytes per working pixel of its largest activation)``, largest
    #: group first.
    groups: dict[tuple[int, int], tuple[Segment, float]] = dataclasses.field(
        default_factory=dict)

    def working_size(self, h: int, w: int) -> tuple[int, int]:
        a = self.align
        return -(-h // a) * a, -(-w // a) * a

    def steps(self, group: tuple[int, int] | None = None
              ) -> list[tuple[int, int, Segment]]:
        """``(first, last, segment)`` in run order: each segment, or the fused ``group``
        (a key of :attr:`groups`) in place of its segments."""
        out: list[tuple[int, int, Segment]] = []
        k = 0
        while k < len(self.segments):
            if group is not None and k == group[0]:
                out.append((group[0], group[1], self.groups[group][0]))
                k = group[1] + 1
            else:
                out.append((k, k, self.segments[k]))
                k += 1
        return out

    def buffer_bytes(self, n: int, h: int, w: int, group: tuple[int, int] | None = None) -> int:
        """Largest total size of the buffers a tiled run of ``n x h x w`` keeps at once
        (with ``group`` run whole: its inner tensors need none)."""
        return max(self.live_bytes(n, h, w, group))

    def live_bytes(self, n: int, h: int, w: int, group: tuple[int, int] | None = None
                   ) -> list[int]:
        """Bytes of the buffers live during each of :meth:`steps`."""
        hp, wp = self.working_size(h, w)
        live: dict[str, int] = {}
        out = []
        for first, last, seg in self.steps(group):
            for t in seg.outputs:
                s = self.scale[t]
                live[t] = (n * h * w * 3 if t == OUTPUT_NAME else
                           n * self.channels[t] * (hp // s) * (wp // s) * self.dtype[t].itemsize)
            out.append(sum(live.values()))
            for t in [t for t, end in self.last_use.items() if first <= end <= last]:
                live.pop(t, None)
        return out


def _probe(model: onnx.ModelProto, names: list[str], h: int, w: int) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.graph.output[:]
    for n in names:
        m.graph.output.append(helper.make_empty_tensor_value_info(n))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
    return dict(zip(names, sess.run(names, {INPUT_NAME: x}), strict=True))


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def split_model(data: bytes, fp16: bool = True,
                probe_hw: tuple[int, int] = (42, 58)) -> SplitModel:
    """Split ``data`` (an exported style model) at its instance norms; :class:`NotTileable`.

    ``fp16``: kept float tensors go in and out of the segments as float16 (the buffers'
    precision, :mod:`.exact`)."""
    model = onnx.load_from_string(data)
    g = model.graph
    if [i.name for i in g.input if i.name not in {t.name for t in g.initializer}] != [INPUT_NAME] \
            or [o.name for o in g.output] != [OUTPUT_NAME]:
        raise NotTileable("not the style-model contract (one input 'image', one output "
                          "'stylized')")
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                default=0)
    if opset < 13:
        raise NotTileable(f"opset {opset} < 13")
    inits = {t.name: t for t in g.initializer}
    nodes = list(g.node)
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            producer[o] = i
        for t in n.input:
            consumers.setdefault(t, []).append(i)
    for n in nodes:
        if n.domain not in ("", "ai.onnx"):
            raise NotTileable(f"custom op {n.domain}.{n.op_type}")
        if n.op_type not in _POINTWISE | _SHAPE | _SPATIAL | {NORM_OP}:
            raise NotTileable(f"op {n.op_type} ({n.name or n.output[0]}) has an unknown reach")
        if n.op_type == "Resize" and _attrs(n).get("mode", b"nearest") != b"nearest":
            raise NotTileable("only nearest Resize is tileable")
    norm_idx = [i for i, n in enumerate(nodes) if n.op_type == NORM_OP]
    if not norm_idx:
        raise NotTileable("no InstanceNormalization op (nothing to split at)")
    norms = []
    for i in norm_idx:
        n = nodes[i]
        if n.input[1] not in inits or n.input[2] not in inits:
            raise NotTileable("instance-norm scale/bias are not constants")
        eps = float(_attrs(n).get("epsilon", 1e-5))  # type: ignore[arg-type]
        norms.append((eps, onnx.numpy_helper.to_array(inits[n.input[1]]).astype(np.float64),
                      onnx.numpy_helper.to_array(inits[n.input[2]]).astype(np.float64)))
    norm_of = {i: k for k, i in enumerate(norm_idx)}

    # Probe: every rank-4 float/uint8 tensor's shape at an odd size.
    spatial_candidates = [o for n in nodes for o in n.output if o]
    values = _probe(model, spatial_candidates, *probe_hw)
    rank4 = {t for t, v in values.items() if v.ndim == 4}
    hp_w = values[nodes[norm_idx[0]].input[0]].shape[2:]
    align = 1
    scale: dict[str, int] = {INPUT_NAME: 1, OUTPUT_NAME: 1}
    for t in rank4:
        if t in (OUTPUT_NAME,) or nodes[producer[t]].op_type in ("Pad", "Transpose"):
            continue
        h, w = values[t].shape[2:]
        if h and hp_w[0] % h == 0 and hp_w[1] % w == 0 and hp_w[0] // h == hp_w[1] // w:
            scale[t] = hp_w[0] // h
            align = max(align, scale[t])
    if tuple(hp_w) != tuple(-(-s // align) * align for s in probe_hw):
        raise NotTileable(f"working size {tuple(hp_w)} at input {probe_hw} is not the input "
                          f"rounded up to a multiple of {align}")

    kept: set[str] = {INPUT_NAME}
    done: set[int] = set()  # nodes in any earlier segment's closure
    targets = [nodes[i].input[0] for i in norm_idx] + [OUTPUT_NAME]
    segments: list[Segment] = []
    closures: list[set[int]] = []
    last_use: dict[str, int] = {}
    for k, target in enumerate(targets):
        closure: set[int] = set()
        ins: list[str] = []
        used_norms: list[int] = []
        stack = [target]
        seen: set[str] = set()
        while stack:
            t = stack.pop()
            if t in seen or t == "" or t in inits:
                continue
            seen.add(t)
            if t in kept:
                ins.append(t)
                continue
            i = producer[t]
            closure.add(i)
            if i in norm_of:
                used_norms.append(norm_of[i])
                stack.append(nodes[i].input[0])
                continue
            stack.extend(nodes[i].input)
        carried: list[str] = []
        for i in sorted(closure):
            for o in nodes[i].output:
                if o in rank4 and o != target and o not in kept and any(
                        c not in closure and c not in done for c in consumers.get(o, [])):
                    if o not in scale:
                        raise NotTileable(f"tensor {o} is kept between segments but has no "
                                          "integer scale")
                    carried.append(o)
        ins = sorted(set(ins), key=lambda t: (t != INPUT_NAME, t))
        for t in ins:
            last_use[t] = k
        outs = [target, *carried]
        radius = 0
        for i in closure:
            n = nodes[i]
            if n.op_type == "Conv":
                a = _attrs(n)
                ks = list(a.get("kernel_shape") or ())  # type: ignore[call-overload]
                dil = list(a.get("dilations") or [1] * len(ks))  # type: ignore[call-overload]
                strides = list(a.get("strides") or [1] * len(ks))  # type: ignore[call-overload]
                if not ks:
                    raise NotTileable("Conv without kernel_shape")
                reach = max(math.ceil((kk - 1) * d / 2) for kk, d in zip(ks, dil, strict=True))
                out_scale = scale.get(n.output[0])
                if out_scale is None or out_scale % max(strides):
                    raise NotTileable(f"Conv {n.output[0]}: no integer scale")
                radius += reach * out_scale // max(strides)
        segments.append(Segment(
            _segment_model(model, nodes, sorted(closure), norm_of, ins, outs, values, inits,
                           k, fp16),
            tuple(ins), tuple(t + _HALF if fp16 and t != INPUT_NAME and values[t].dtype.kind == "f"
                              else t for t in ins),
            tuple(sorted(set(used_norms))), tuple(outs), radius))
        kept.update(outs)
        done |= closure
        closures.append(closure)
    channels = {t: int(values[t].shape[3 if t == OUTPUT_NAME else 1]) for t in kept
                if t != INPUT_NAME}
    channels[INPUT_NAME] = 3
    dtype = {t: values[t].dtype for t in kept if t != INPUT_NAME}
    dtype[INPUT_NAME] = np.dtype(np.uint8)
    if fp16:
        dtype = {t: np.dtype(np.float16) if d.kind == "f" else d for t, d in dtype.items()}
    groups = _groups(model, nodes, segments, closures, norm_of, values, inits, scale, last_use,
                     fp16)
    return SplitModel(tuple(segments), tuple(norms), scale, channels, dtype, align, last_use,
                      groups)


def _groups(model: onnx.ModelProto, nodes: list[onnx.NodeProto], segments: list[Segment],
            closures: list[set[int]], norm_of: dict[int, int], values: dict[str, np.ndarray],
            inits: dict[str, onnx.TensorProto], scale: dict[str, int], last_use: dict[str, int],
            fp16: bool) -> dict[tuple[int, int], tuple[Segment, float]]:
    """For each downscale ``s > 1``: the longest run of segments whose inputs and outputs
    are all at ``s`` or coarser, as one graph (see :attr:`SplitModel.groups`).

    The network's middle (the residual blocks of Johnson et al.'s, at 1/4 resolution)
    needs a sixteenth of the pixels of its ends, so it fits whole long after the image
    does not, and running it whole saves the per-segment passes where most of the
    arithmetic is (60% of the bundled style's)."""
    out: dict[tuple[int, int], tuple[Segment, float]] = {}
    for s in sorted({v for v in scale.values() if v > 1}):
        ok = [all(scale.get(t, 1) >= s for t in (*seg.inputs, *seg.outputs)
                  if t not in (INPUT_NAME, OUTPUT_NAME)) and INPUT_NAME not in seg.inputs
              and OUTPUT_NAME not in seg.outputs for seg in segments]
        best: tuple[int, int] | None = None
        k = 0
        while k < len(ok):
            if not ok[k]:
                k += 1
                continue
            m = k
            while m + 1 < len(ok) and ok[m + 1]:
                m += 1
            if m > k and (best is None or m - k > best[1] - best[0]):
                best = (k, m)
            k = m + 1
        if best is None or best in out:
            continue
        k, m = best
        inner_norms = set(range(k, m))
        if any(j in inner_norms for seg in segments[m + 1:] for j in seg.norms):
            continue  # a later segment needs an inner norm's affine map: keep them apart
        closure = set().union(*closures[k:m + 1])
        produced = {t for seg in segments[k:m + 1] for t in seg.outputs}
        ins = sorted({t for seg in segments[k:m + 1] for t in seg.inputs} - produced)
        target = segments[m].outputs[0]
        outs = [target, *sorted(t for t in produced - {target}
                                if last_use.get(t, -1) > m)]
        native = {i for i, j in norm_of.items() if j in inner_norms}
        affine = sorted({j for seg in segments[k:m + 1] for j in seg.norms} - inner_norms)
        seg = Segment(
            _segment_model(model, nodes, sorted(closure), {i: j for i, j in norm_of.items()
                                                          if i not in native},
                           ins, outs, values, inits, k, fp16),
            tuple(ins), tuple(t + _HALF if fp16 and values[t].dtype.kind == "f" else t
                              for t in ins),
            tuple(affine), tuple(outs), 0)
        widest = max(4.0 * int(values[nodes[i].output[0]].shape[1]) /
                     scale.get(nodes[i].output[0], 1) ** 2
                     for i in closure if nodes[i].output[0] in scale)
        out[(k, m)] = (seg, widest)
    return dict(sorted(out.items(), key=lambda kv: kv[0][0] - kv[0][1]))


def _segment_model(model: onnx.ModelProto, nodes: list[onnx.NodeProto], closure: list[int],
                   norm_of: dict[int, int], ins: list[str], outs: list[str],
                   values: dict[str, np.ndarray], inits: dict[str, onnx.TensorProto],
                   k: int, fp16: bool) -> bytes:
    """Segment ``k`` as a model: norms as ``x * mul + add``; kept float tensors in and out as
    float16 (``fp16``; cast inside the graph, where the runtime does it in parallel); and,
    unless it is the last segment, the per-channel sum and sum of squares of its target over
    the crop ``rs_crop_starts:rs_crop_ends`` (rows, columns) as ``rs_sum``/``rs_sumsq``."""
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    new_nodes: list[onnx.NodeProto] = []
    extra_inputs: list[onnx.ValueInfoProto] = []
    extra_inits: list[onnx.TensorProto] = []
    used: set[str] = set()
    graph_inputs = []
    for t in ins:
        if t == INPUT_NAME:
            graph_inputs.append(helper.make_tensor_value_info(
                t, onnx.TensorProto.UINT8, ["N", "H", "W", 3]))
            continue
        kind = helper.np_dtype_to_tensor_dtype(values[t].dtype)
        shape: list[str | int] = ["N", int(values[t].shape[1]), "h", "w"]
        if fp16 and kind == f32:
            graph_inputs.append(helper.make_tensor_value_info(t + _HALF, f16, shape))
            new_nodes.append(helper.make_node("Cast", [t + _HALF], [t], to=f32))
        else:
            graph_inputs.append(helper.make_tensor_value_info(t, kind, shape))
    for i in closure:
        n = nodes[i]
        if i in norm_of:
            j = norm_of[i]
            mul, add = f"rs_norm{j}_mul", f"rs_norm{j}_add"
            scaled = f"rs_norm{j}_scaled_s{k}"
            new_nodes.append(helper.make_node("Mul", [n.input[0], mul], [scaled]))
            new_nodes.append(helper.make_node("Add", [scaled, add], [n.output[0]]))
            for name in (mul, add):
                extra_inputs.append(helper.make_tensor_value_info(name, f32, ["N", "C", 1, 1]))
            used.add(n.input[0])
            continue
        new_nodes.append(n)
        used.update(n.input)
    graph_outputs = []
    for t in outs:
        kind = helper.np_dtype_to_tensor_dtype(values[t].dtype)
        if fp16 and kind == f32:
            new_nodes.append(helper.make_node("Cast", [t], [t + _HALF], to=f16))
            graph_outputs.append(helper.make_tensor_value_info(t + _HALF, f16, [None] * 4))
        else:
            graph_outputs.append(helper.make_tensor_value_info(t, kind, [None] * 4))
    if outs[0] != OUTPUT_NAME:
        target = outs[0]
        extra_inputs += [helper.make_tensor_value_info(n, onnx.TensorProto.INT64, [2])
                         for n in ("rs_crop_starts", "rs_crop_ends")]
        extra_inits.append(onnx.numpy_helper.from_array(np.array([2, 3], np.int64),
                                                        f"rs_axes_s{k}"))
        new_nodes += [
            helper.make_node("Slice", [target, "rs_crop_starts", "rs_crop_ends", f"rs_axes_s{k}"],
                             ["rs_core"]),
            helper.make_node("ReduceSum", ["rs_core", f"rs_axes_s{k}"], ["rs_sum"], keepdims=0),
            helper.make_node("Mul", ["rs_core", "rs_core"], ["rs_core_sq"]),
            helper.make_node("ReduceSum", ["rs_core_sq", f"rs_axes_s{k}"], ["rs_sumsq"],
                             keepdims=0),
        ]
        graph_outputs += [helper.make_tensor_value_info(n, f32, ["N", "C"])
                          for n in ("rs_sum", "rs_sumsq")]
    graph = helper.make_graph(new_nodes, f"segment{k}", graph_inputs + extra_inputs,
                              graph_outputs,
                              [inits[t] for t in sorted(used) if t in inits] + extra_inits)
    seg = helper.make_model(graph, opset_imports=list(model.opset_import),
                            ir_version=model.ir_version)
    return seg.SerializeToString()
