"""Count the work of a style network from its ONNX graph: FLOPs, memory traffic, peak memory.

Every intermediate tensor is made a graph output and the model is run once on ONNX Runtime
(CPU) at each size, so all shapes are the real ones (the padding to a multiple of 4 is
computed inside the graph, which static shape inference cannot follow). Then:

* FLOPs: 2 x multiply-accumulates of every ``Conv`` (``Cout x Hout x Wout x Cin/group x
  kH x kW``) plus one FLOP per bias add; every other op counted as one FLOP per output
  element (``InstanceNormalization`` as 8: mean, centring, square, variance, rsqrt-scale,
  affine), reported separately so the convolution share is visible.
* Memory traffic: bytes each node reads and writes if nothing were fused (an upper bound),
  and the lower bound a fused engine approaches (weights + the network's input and output +
  every Conv's input and output once).
* Peak activation memory: the largest sum of tensors alive at once in topological order
  (a tensor lives from its producer to its last consumer), per input pixel, in fp32; fp16
  halves the float tensors.

    python scripts/count_flops.py                       # the bundled style, 256/512/1024
    python scripts/count_flops.py styles/x.onnx --sizes 512 1024 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

BUNDLED = Path(__file__).resolve().parents[1] / "src/robust_style/models/the-scream.onnx"
ELEMENTWISE_FLOPS = {"InstanceNormalization": 8}


def _with_all_outputs(model: onnx.ModelProto) -> tuple[bytes, list[str]]:
    names = [o for n in model.graph.node for o in n.output if o]
    known = {o.name for o in model.graph.output}
    for name in names:
        if name not in known:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    return model.SerializeToString(), names


def count(model_path: Path, size: int, batch: int = 1) -> dict[str, float]:
    model = onnx.load(model_path)
    graph = model.graph
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    data, names = _with_all_outputs(onnx.load(model_path))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    outs = dict(zip([o.name for o in sess.get_outputs()],
                    sess.run(None, {graph.input[0].name: x}), strict=True))
    outs[graph.input[0].name] = x
    arrays = {**inits, **outs}

    conv_flops = other_flops = 0.0
    unfused = 0
    fused = sum(a.nbytes for a in inits.values()) + x.nbytes + outs[graph.output[0].name].nbytes
    for node in graph.node:
        ins = [arrays[i] for i in node.input if i in arrays]
        out = arrays[node.output[0]]
        unfused += sum(a.nbytes for a in ins) + sum(arrays[o].nbytes for o in node.output)
        if node.op_type == "Conv":
            w = arrays[node.input[1]]
            cout, cin_g, kh, kw = w.shape
            conv_flops += 2.0 * out.size * cin_g * kh * kw + (out.size if len(node.input) > 2
                                                              else 0)
            fused += ins[0].nbytes + out.nbytes
        else:
            other_flops += ELEMENTWISE_FLOPS.get(node.op_type, 1) * out.size

    # liveness: tensor i is alive from its producer to its last consumer
    order = {o: k for k, n in enumerate(graph.node) for o in n.output}
    last_use: dict[str, int] = {}
    for k, n in enumerate(graph.node):
        for i in n.input:
            if i in outs:
                last_use[i] = k
    last_use[graph.output[0].name] = len(graph.node)
    peak32 = peak16 = 0
    for k in range(len(graph.node)):
        alive = [t for t in outs if order.get(t, -1) <= k <= last_use.get(t, -1)]
        b32 = sum(outs[t].nbytes for t in alive)
        b16 = sum(outs[t].nbytes // (2 if outs[t].dtype == np.float32 else 1) for t in alive)
        peak32, peak16 = max(peak32, b32), max(peak16, b16)
    pixels = batch * size * size
    return {"size": size, "batch": batch, "gflop": (conv_flops + other_flops) / 1e9,
            "conv_gflop": conv_flops / 1e9, "other_gflop": other_flops / 1e9,
            "traffic_unfused_mb": unfused / 1e6, "traffic_fused_mb": fused / 1e6,
            "peak_fp32_mb": peak32 / 1e6, "peak_fp16_mb": peak16 / 1e6,
            "peak_fp32_bytes_per_pixel": peak32 / pixels,
            "peak_fp16_bytes_per_pixel": peak16 / pixels,
            "params_m": sum(a.size for a in inits.values() if a.dtype != np.int64) / 1e6}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", type=Path, default=BUNDLED)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = [count(args.model, s) for s in args.sizes]
    print(f"{args.model.name}: {rows[0]['params_m']:.3f} M parameters")
    print("| size | GFLOP | conv GFLOP | other GFLOP | traffic fused / unfused (MB) | "
          "peak activations fp16 / fp32 (MB) | fp16 B/pixel |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']}² | {r['gflop']:.1f} | {r['conv_gflop']:.1f} | "
              f"{r['other_gflop']:.2f} | {r['traffic_fused_mb']:.0f} / "
              f"{r['traffic_unfused_mb']:.0f} | {r['peak_fp16_mb']:.0f} / "
              f"{r['peak_fp32_mb']:.0f} | {r['peak_fp16_bytes_per_pixel']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
