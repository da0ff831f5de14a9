"""Measurements of the device mode (issue 25 part 2), one section per subprocess + timeout.

Run by ``scripts/gpu_device.py measure`` (which puts the carried wheels on PYTHONPATH).
Sections: ``ceilings`` (1 GiB device copy GB/s, 8192³ bf16 matmul TFLOPS), ``torch_infer``
(style network at 512², 1024², 1920x1080, batch 1 and 8: eager fp32, channels_last fp16,
torch.compile), ``ort_infer`` (ONNX Runtime CUDA EP, IO binding, fp32 and fp16; CUDA graphs where
the EP allows), ``server`` (``robust-style serve --device cuda`` over gRPC, 1 and 8
clients), ``train`` (``benchmarks/bench_train.py``'s steps, 256 px, batch 4 and 16).
Medians after warm-up. TensorRT is not on the lent machine: the report says so.
Report: ``--out``/report.md and report.json, written by :func:`write_report`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("ceilings", "ort_infer", "torch_infer", "server", "train")
SHARE = {"ceilings": 0.05, "ort_infer": 0.3, "torch_infer": 0.2, "server": 0.12, "train": 0.28}
SHAPES = [(512, 512), (1024, 1024), (1080, 1920)]
BATCHES = (1, 8)


def _cuda_ms(fn: Any, n: int, warm: int = 3) -> float:
    import torch

    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(ts)


def sec_ceilings() -> dict[str, Any]:
    import torch

    a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    ms = _cuda_ms(lambda: b.copy_(a), 20)
    m = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    mm = _cuda_ms(lambda: m @ m, 20)
    return {"copy_GBps_read_plus_write": round(2 * (1 << 30) / ms / 1e6, 1),
            "bf16_matmul_8192_TFLOPS": round(2 * 8192**3 / mm / 1e9, 1),
            "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
            "cuda": torch.version.cuda}


def emit(figures: dict[str, Any]) -> None:
    """Print the figures so far (one JSON line): a section cut by its timeout keeps them."""
    print(json.dumps(figures), flush=True)


def _row(ms: float, n: int) -> dict[str, float]:
    return {"ms": round(ms, 3), "ms_per_image": round(ms / n, 3),
            "img_per_s": round(n / ms * 1000, 1)}


def sec_torch_infer() -> dict[str, Any]:
    import torch

    from robust_style.transformer_net import TransformerNet

    out: dict[str, Any] = {}
    net32 = TransformerNet().cuda().eval()
    net16 = TransformerNet().cuda().eval().half().to(memory_format=torch.channels_last)
    comp = torch.compile(net16)
    with torch.inference_mode():
        for h, w in SHAPES:
            for n in BATCHES:
                x = torch.rand(n, 3, h, w, device="cuda")
                x16 = x.half().contiguous(memory_format=torch.channels_last)
                key = f"{w}x{h}_b{n}"
                out[key] = {"eager_fp32": _row(_cuda_ms(lambda x=x: net32(x), 10), n),
                            "channels_last_fp16": _row(_cuda_ms(lambda x16=x16: net16(x16), 10), n)}
                try:
                    out[key]["compile_fp16"] = _row(_cuda_ms(lambda x16=x16: comp(x16), 10, warm=3), n)
                except Exception as e:
                    out[key]["compile_fp16"] = {"error": f"{type(e).__name__}: {e}"[:300]}
                emit(out)
    return out


def sec_ort_infer() -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError(f"no CUDA EP in onnxruntime {ort.__version__} ({ort.__file__})")
    model = str(REPO / "src/robust_style/models/the-scream.onnx")
    out: dict[str, Any] = {"onnxruntime": ort.__version__,
                           "tensorrt": "absent on the lent machine: not measured"}
    models = {"fp32": model}
    fp16 = REPO / "gpu-check/wheelhouse/models/style-fp16.onnx"  # gpu_device.py prepare
    if fp16.is_file():
        models["fp16"] = str(fp16)
    variants = [(f"cuda_{p}_{kind}", path, graph) for p, path in models.items()
                for kind, graph in (("iobinding", "0"), ("cudagraph", "1"))]
    for h, w in SHAPES:
        for n in BATCHES:
            x = np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
            row: dict[str, Any] = {}
            for name, model, graph in variants:
                try:
                    sess = ort.InferenceSession(model, providers=[("CUDAExecutionProvider", {
                        "enable_cuda_graph": graph, "cudnn_conv_algo_search": "EXHAUSTIVE"})])
                    xin = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
                    yout = ort.OrtValue.ortvalue_from_numpy(np.empty_like(x), "cuda", 0)
                    io = sess.io_binding()
                    io.bind_ortvalue_input(sess.get_inputs()[0].name, xin)
                    io.bind_ortvalue_output(sess.get_outputs()[0].name, yout)
                    for _ in range(3):
                        sess.run_with_iobinding(io)
                    ts = []
                    for _ in range(20):
                        t0 = time.perf_counter()
                        sess.run_with_iobinding(io)
                        io.synchronize_outputs()
                        ts.append((time.perf_counter() - t0) * 1000)
                    row[name] = _row(statistics.median(ts), n)
                except Exception as e:
                    row[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
            out[f"{w}x{h}_b{n}"] = row
            emit(out)
    if "fp16" not in models:
        out["fp16"] = f"{fp16} not carried (run gpu_device.py prepare): not measured"
    return out


def sec_server() -> dict[str, Any]:
    import threading
    import types

    import numpy as np

    sys.path.insert(0, str(REPO / "scripts"))
    from gpu_check_serving import Server

    tmp = Path(REPO / "gpu-check/device/serve")
    (tmp / "models").mkdir(parents=True, exist_ok=True)
    import shutil
    shutil.copy(REPO / "src/robust_style/models/the-scream.onnx", tmp / "models/gc.onnx")
    srv = Server(types.SimpleNamespace(out=tmp), "cuda", tmp / "cache", tmp / "models")
    out: dict[str, Any] = {"ready_s": round(srv.ready_seconds, 1), "providers": srv.providers}
    try:
        x = np.random.default_rng(0).integers(0, 256, (1, 512, 512, 3), dtype=np.uint8)
        for _ in range(5):
            srv.infer(x)
        for clients in (1, 8):
            lat: list[float] = []
            stop = time.monotonic() + 10

            def work(stop: float = stop, lat: list[float] = lat) -> None:
                while time.monotonic() < stop:
                    t0 = time.perf_counter()
                    srv.infer(x)
                    lat.append((time.perf_counter() - t0) * 1000)
            th = [threading.Thread(target=work) for _ in range(clients)]
            for t in th:
                t.start()
            for t in th:
                t.join()
            out[f"512x512_{clients}_clients"] = {"median_ms": round(statistics.median(lat), 2),
                                                 "img_per_s": round(len(lat) / 10, 1)}
            emit(out)
    finally:
        srv.stop()
    return out


def sec_train() -> dict[str, Any]:
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_train import our_step, reference_step

    dev = torch.device("cuda")
    out: dict[str, Any] = {}
    for batch in (4, 16):
        x = torch.rand(batch, 3, 256, 256, device=dev)
        variants = {"reference (vgg16, fp32)": lambda: reference_step(256, dev)}
        for comp in ("off", "on"):  # the compiles last: a timeout keeps the eager figures
            for bb in ("vgg16-caffe", "robust-resnet50"):
                for prec in ("bf16", "fp32"):
                    variants[f"{bb} {prec} channels_last compile {comp}"] = (
                        lambda bb=bb, prec=prec, comp=comp: our_step(bb, prec, 256, dev, True,
                                                                     comp))
        row: dict[str, Any] = {}
        for name, make in variants.items():
            try:
                step = make()
                ms = _cuda_ms(lambda step=step, x=x: step(x), 10, warm=3)
                row[name] = {"ms_per_step": round(ms, 2)}
            except Exception as e:
                row[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
            out[f"256px_b{batch}"] = row
            emit(out)
    return out


def sec_selftest() -> dict[str, Any]:
    """The driver's own test (CPU): one figure, then a hang its timeout must cut."""
    emit({"first": {"done": 1}})
    time.sleep(600)
    return {}


def write_report(results: dict[str, Any], out: Path) -> None:
    """``report.json`` (everything) and ``report.md`` (one table per section)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(results, indent=2))
    md = [f"# GPU device check, {results.get('date', '?')}", ""]
    md += [f"- {n}" for n in results.get("notes", [])]
    md += ["- TensorRT: absent on the lent machine; its code path is unchanged and unmeasured",
           ""]
    for name, sec in results.get("sections", {}).items():
        md += [f"## {name}: {sec['status']} ({sec.get('seconds', 0):.0f} s)", ""]
        if sec["status"] == "timeout (partial)":
            md += [f"    {sec.get('reason', '')}: the figures measured before it", ""]
        elif sec["status"] != "ok":
            md += [f"    {sec.get('reason', '')}", ""]
            continue
        flat = [(k, v) for k, v in sec["figures"].items()]
        rows = [(k, v) for k, v in flat if isinstance(v, dict)]
        md += [f"- {k}: {v}" for k, v in flat if not isinstance(v, dict)]
        if rows:
            md += ["", "| case | variant | figures |", "|---|---|---|"]
            for k, v in rows:
                for var, fig in v.items():
                    text = (", ".join(f"{a} {b}" for a, b in fig.items())
                            if isinstance(fig, dict) else str(fig))
                    md.append(f"| {k} | {var} | {text} |")
        md.append("")
    (out / "report.md").write_text("\n".join(md))


def run_section(name: str, timeout_s: float) -> dict[str, Any]:
    """One section in a subprocess under ``timeout_s``: ok + figures, or failed + reason."""
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, __file__, "--section", name], capture_output=True,
                           text=True, timeout=timeout_s, cwd=REPO)
    except subprocess.TimeoutExpired as e:
        got = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        lines = got.strip().splitlines()
        res: dict[str, Any] = {"status": "timeout", "reason": f"over {timeout_s:.0f} s",
                               "seconds": time.monotonic() - t0}
        if lines:
            res.update(status="timeout (partial)", figures=json.loads(lines[-1]))
        return res
    dt = time.monotonic() - t0
    lines = p.stdout.strip().splitlines()
    if p.returncode == 0 and lines:
        return {"status": "ok", "figures": json.loads(lines[-1]), "seconds": dt}
    return {"status": "failed", "reason": (p.stderr.strip().splitlines() or ["?"])[-1][:400],
            "seconds": dt}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--section", choices=(*SECTIONS, "selftest"), help="(internal) run one, print JSON")
    ap.add_argument("--out", type=Path, default=REPO / "gpu-check")
    ap.add_argument("--budget-s", type=int, default=480)
    ap.add_argument("--only", default="all")
    ap.add_argument("--note", action="append", default=[])
    args = ap.parse_args(argv)
    if args.section:
        print(json.dumps(globals()[f"sec_{args.section}"]()))
        return 0
    only = SECTIONS if args.only == "all" else tuple(args.only.split(","))
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section {bad[0]!r}; choose from {','.join(SECTIONS)}")
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "notes": args.note, "sections": {}}
    for s in only:
        results["sections"][s] = run_section(s, args.budget_s * SHARE[s])
        write_report(results, args.out)  # after each: a later timeout keeps the rest
        print(f"{s}: {results['sections'][s]['status']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
