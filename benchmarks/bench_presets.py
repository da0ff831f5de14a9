"""Frames per second of each architecture preset, bare engine, on the CPU at hand (issue 23).

For each preset in :data:`robust_style.transformer_net.arch.ARCH_PRESETS` (random
weights: speed does not depend on them) plus the two bundled styles, the exported file is
loaded through the server's own engine selection (:class:`EngineSelector`: OpenVINO bf16
where the CPU has it, int8 only if it passes the gate and is faster) and through ONNX
Runtime fp32, then timed at 640x360 and 1280x720 (median of ``--repeats`` runs, 2 threads
by default). The CPU model is printed with the figures. Writes ``--out`` JSON.

    python benchmarks/bench_presets.py --out docs/presets_bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIZES = ((640, 360), (1280, 720))


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _time(engine, x: np.ndarray, repeats: int) -> float:  # type: ignore[no-untyped-def]
    engine.run(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        engine.run(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="*", default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch
    from PIL import Image
    from skimage import data

    from robust_style.contract import StyleMetadata
    from robust_style.export import export_onnx
    from robust_style.server.engines import EngineConfig
    from robust_style.server.engines.onnxruntime_engine import (
        CPU,
        OnnxRuntimeEngine,
        ProviderConfig,
    )
    from robust_style.server.engines.select import EngineSelector
    from robust_style.transformer_net import TransformerNet
    from robust_style.transformer_net.arch import ARCH_PRESETS

    providers = ProviderConfig(intra_op_threads=args.threads)
    selector = EngineSelector(EngineConfig(providers=providers))
    tmp = Path(tempfile.mkdtemp())
    files: dict[str, Path] = {}
    for name in args.presets or list(ARCH_PRESETS):
        torch.manual_seed(0)
        files[name] = export_onnx(TransformerNet(ARCH_PRESETS[name]).eval(), tmp / f"{name}.onnx",
                                  StyleMetadata(name=name))
    for bundled in ("the-scream", "the-scream-fast"):
        files[f"bundled {bundled}"] = REPO / "src" / "robust_style" / "models" / f"{bundled}.onnx"
    photo = Image.fromarray(data.astronaut())
    frames = {f"{w}x{h}": np.asarray(photo.resize((w, h)))[None].copy() for w, h in SIZES}
    rows = []
    cpu = _cpu()
    print(f"CPU: {cpu}, {args.threads} threads")
    for name, path in files.items():
        model = path.read_bytes()
        served = selector.load(model, 128, label=name)
        ort = OnnxRuntimeEngine(model, providers, [(CPU, {})])
        row = {"model": name, "engine": served.engine.describe(), "note": served.note}
        for size, x in frames.items():
            row[f"served_fps_{size}"] = round(1 / _time(served.engine, x, args.repeats), 2)
            row[f"ort_fp32_fps_{size}"] = round(1 / _time(ort, x, args.repeats), 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"cpu": cpu, "threads": args.threads, "rows": rows},
                                       indent=1) + "\n")


if __name__ == "__main__":
    main()
