"""Inference latency of the style network: PyTorch eager fp32 vs the exported ONNX model
in ONNX Runtime (CPU execution provider), at 256, 512 and 1024 px, in one run.

    /work/venv/bin/python benchmarks/bench_export.py [--repeats 5] [--threads 2]
        [--sizes 256,512,1024] [--out docs]

The default-size Johnson network (1.68M parameters; latency does not depend on the weight
values, so a seeded random init stands in for a trained one). PyTorch runs the float
network on a float32 NCHW [0,1] tensor; ONNX Runtime runs the served file (uint8 NHWC in
and out, pre/post-processing included), as a server would. Both get the same number of
threads; runs alternate (torch, ORT, torch, ...) with a short pause between them, so load
on a shared machine hits both alike and neither engine's spin-waiting threads slow the other. Prints the median of the repeats and the ratio, and saves a PNG chart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from robust_style.contract import INPUT_NAME, StyleMetadata
from robust_style.export.onnx_export import build_served_model
from robust_style.transformer_net import TransformerNet


def plot(rows: list[tuple[int, float, float]], threads: int, load: float, png: Path) -> None:
    """Grouped bars (log scale) of the median latencies, with the ratio over each pair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = np.arange(len(rows))
    ax.bar(xs - 0.2, [r[1] for r in rows], 0.4, label="PyTorch eager fp32")
    ax.bar(xs + 0.2, [r[2] for r in rows], 0.4, label="ONNX Runtime CPU EP (served uint8 model)")
    for i, (_, p, r) in enumerate(rows):
        ax.text(i, max(p, r) * 1.15, f"ORT {p / r:.2f}x faster", ha="center", fontsize=9)
    ax.set_yscale("log")
    lo = min(min(r[1], r[2]) for r in rows)
    hi = max(max(r[1], r[2]) for r in rows)
    ax.set_ylim(lo / 2, hi * 6)
    ax.set_xticks(xs, [f"{r[0]} px" for r in rows])
    ax.set_ylabel(f"median latency, ms (batch 1, {threads} threads)")
    ax.set_title("Style network inference: PyTorch vs exported ONNX\n"
                 f"(load avg {load:.1f} on {os.cpu_count()} cores while measuring)", fontsize=10)
    ax.legend(loc="upper left")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per size and engine")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--sizes", default="256,512,1024", help="square image sides, px")
    ap.add_argument("--pause", type=float, default=0.3,
                    help="seconds between runs, so idle threads of one engine (OpenMP, "
                         "ORT spin-waiting) do not slow the next run of the other")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    net = TransformerNet().eval()
    t0 = time.perf_counter()
    model = build_served_model(net, StyleMetadata(name="bench"))
    export_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.onnx"
        path.write_bytes(model.SerializeToString())
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    load = os.getloadavg()[0]
    print(f"threads {args.threads}, repeats {args.repeats}, torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}, export {export_s:.1f} s, load avg {load:.1f}")
    print(f"{'size':>6} {'pytorch ms':>11} {'onnxrt ms':>10} {'ratio pt/ort':>13}")
    rows = []
    rng = np.random.default_rng(0)
    for side in sizes:
        img = rng.integers(0, 256, (1, side, side, 3), dtype=np.uint8)
        x = torch.from_numpy(img).permute(0, 3, 1, 2).float().div(255.0).contiguous()

        def run_torch(x: torch.Tensor = x) -> None:
            with torch.inference_mode():
                net(x)

        def run_ort(img: np.ndarray = img) -> None:
            sess.run(None, {INPUT_NAME: img})

        run_torch()  # warm-up (allocator, ORT arena)
        run_ort()
        pt, rt = [], []
        for _ in range(args.repeats):
            for fn, acc in ((run_torch, pt), (run_ort, rt)):
                time.sleep(args.pause)  # let the other engine's worker threads stop spinning
                t = time.perf_counter()
                fn()
                acc.append(1000 * (time.perf_counter() - t))
        p, r = statistics.median(pt), statistics.median(rt)
        rows.append((side, p, r))
        print(f"{side:>6} {p:>11.1f} {r:>10.1f} {p / r:>13.2f}")

    png = args.out / "bench_export.png"
    plot(rows, args.threads, load, png)
    print(f"chart: {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
