"""GPU readiness in one run: training, export, serving on TensorRT and CUDA, and their figures.

Run through ``scripts/gpu_check.sh`` (which installs what is needed first). On a machine
without a CUDA GPU it exits 2 with one line. Each check is recorded (ok / failed + the
reason, seconds, figures) and a failing check does not stop the others; the report goes
to ``--out`` (default ``gpu-check/``): ``report.md``, ``report.json``, ``latency.png`` and
``log.txt`` (every command's output).

Checks (issue 15 "GPU readiness in one command", issue 17 "Real-time on a GPU"):
 1. ``train``: torchrun DDP (NCCL) on 1 GPU and on all GPUs, 20 steps, bf16 and fp16, the
    robust ResNet-50 loss network with a made-up MadryLab-layout checkpoint; then
    ``resume`` (+10 steps) and ``export`` (fp32 and ``--fp16``).
 2. ``serve``: ``robust-style serve`` on ``--device tensorrt`` (cold engine cache), again
    (restart: the cache must be reused: no engine file rewritten, ready much sooner) and on
    ``--device cuda``; KServe raw outputs vs CPU fp32 ONNX Runtime (PSNR, share of pixels
    within 1 LSB) at odd and large sizes, batch 1 and 8, and a shape beyond every
    TensorRT profile (must be served by the fallback).
 3. ``first_request``: after warm-up, the first request at 10 random sizes vs the steady
    latency at that size (target: none above 3x).
 4. ``steady``: latency and throughput at 512² and 1024², batch 1 and 8, on TensorRT fp16,
    CUDA fp32 and CUDA with the fp16 file, interleaved; fp16 vs fp32 PSNR.
 5. ``bench_server`` (256/512/1024) and ``bench_train`` (``--device cuda``).

    scripts/gpu_check.sh                    # everything, < 10 min on one modern GPU
    python scripts/gpu_check.py --only serve,steady --out /tmp/gc
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
CHECKS = ("train", "serve", "first_request", "steady", "bench_server", "bench_train")


def gpus() -> list[str]:
    """``nvidia-smi`` GPU descriptions (name, memory, driver); [] without a usable GPU."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


class Run:
    """The report being built, the scratch directory and the command log."""

    def __init__(self, out: Path, ngpu: int) -> None:
        self.out, self.ngpu = out, ngpu
        out.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        self.log = (out / "log.txt").open("w")
        self.checks: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {}

    def check(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        print(f"[gpu_check] {name} ...", flush=True)
        t0 = time.monotonic()
        try:
            figures, ok, note = fn(), True, ""
        except Exception as exc:  # noqa: BLE001 - a failing check must not stop the others
            figures, ok = {}, False
            note = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
            self.log.write(f"\n### {name} failed\n{traceback.format_exc()}\n")
        if isinstance(figures.get("ok"), bool):
            ok = ok and figures.pop("ok")
        note = note or figures.pop("note", "")
        self.checks.append({"check": name, "ok": ok, "seconds": round(time.monotonic() - t0, 1),
                            "note": note, "figures": figures})
        print(f"[gpu_check] {name}: {'ok' if ok else 'FAILED ' + note} "
              f"({self.checks[-1]['seconds']} s)", flush=True)

    def sh(self, args: list[str], timeout: float = 600, env: dict | None = None) -> str:
        self.log.write(f"\n$ {' '.join(map(str, args))}\n")
        self.log.flush()
        p = subprocess.run(list(map(str, args)), capture_output=True, text=True, cwd=REPO,
                           timeout=timeout, env={**os.environ, **(env or {})})
        self.log.write(p.stdout + p.stderr)
        if p.returncode:
            tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"exit {p.returncode}: {' | '.join(tail)}")
        return p.stdout


# --- 1. training, resume, export ------------------------------------------------------------
def _data(run: Run) -> tuple[Path, Path, Path]:
    from PIL import Image
    from skimage import data

    sys.path.insert(0, str(REPO / "tests"))
    from helpers_checkpoints import random_resnet50, save_madry_checkpoint

    content = run.tmp / "content"
    content.mkdir(exist_ok=True)
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "cat"):
        img = getattr(data, name)()
        Image.fromarray(img).convert("RGB").save(content / f"{name}.png")
    style = run.tmp / "style.png"
    Image.fromarray(data.hubble_deep_field()).convert("RGB").save(style)
    ckpt = save_madry_checkpoint(run.tmp / "madry_made_up.pt", random_resnet50(0))
    return style, content, ckpt


def check_train(run: Run) -> dict[str, Any]:
    style, content, ckpt = _data(run)
    figures: dict[str, Any] = {}
    for nproc in sorted({1, run.ngpu}):
        for prec in ("bf16", "fp16"):
            out = run.tmp / f"run-{nproc}gpu-{prec}"
            t0 = time.monotonic()
            run.sh(["torchrun", "--standalone", "--nproc_per_node", nproc, "-m", "robust_style",
                    "train", "--style", style, "--content", content, "--out", out,
                    "--backbone", "robust-resnet50", "--backbone-weights", ckpt,
                    "--max-steps", 20, "--precision", prec, "--device", "cuda",
                    "--image-size", 256, "--batch-size", 4, "--checkpoint-interval", 10,
                    "--sample-interval", 0, "--workers", 2])
            rows = (out / "log.csv").read_text().strip().splitlines()
            figures[f"{nproc}gpu_{prec}"] = {"seconds": round(time.monotonic() - t0, 1),
                                             "last_log_row": rows[-1]}
            run.state.setdefault("run", out)
    out = run.state["run"]
    run.sh([PY, "-m", "robust_style", "train", "--out", out, "--resume", "--max-steps", 30])
    last = (out / "log.csv").read_text().strip().splitlines()[-1]
    figures["resume_last_log_row"] = last
    models = run.tmp / "models"
    models.mkdir(exist_ok=True)
    run.sh([PY, "-m", "robust_style", "export", out, "-o", models / "gc.onnx"])
    run.sh([PY, "-m", "robust_style", "export", out, "-o", run.tmp / "gc-fp16.onnx", "--fp16"])
    run.state["model"], run.state["model_fp16"] = models / "gc.onnx", run.tmp / "gc-fp16.onnx"
    return figures


def _model(run: Run) -> Path:
    """The exported model, or the bundled style when training/export did not run."""
    if "model" not in run.state:
        models = run.tmp / "models"
        models.mkdir(exist_ok=True)
        shutil.copy(REPO / "src/robust_style/models/the-scream.onnx", models / "gc.onnx")
        run.state["model"] = models / "gc.onnx"
    return run.state["model"]


# --- 2. serving -------------------------------------------------------------------------------
def _photo(h: int, w: int, n: int = 1) -> np.ndarray:
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.BILINEAR)
    x = np.asarray(img)
    return np.stack([np.roll(x, 7 * i, axis=1) for i in range(n)])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB; 999 for identical images (JSON has no infinity)."""
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return 999.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def _compare(y: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    d = np.abs(y.astype(np.int16) - ref)
    return {"psnr_db": round(_psnr(y, ref), 2), "within_1_lsb": round(float(np.mean(d <= 1)), 5),
            "max_abs": int(d.max())}


class Server:
    """A ``robust-style serve`` process and a KServe raw-tensor client."""

    def __init__(self, run: Run, device: str, cache: Path, models: Path, *extra: str) -> None:
        import grpc

        from robust_style.server.client import StyleClient
        from robust_style.server.protos.inference import grpc_service_pb2_grpc as kgrpc

        with socket.socket() as s1, socket.socket() as s2:
            s1.bind(("127.0.0.1", 0))
            s2.bind(("127.0.0.1", 0))
            self.port, self.metrics_port = s1.getsockname()[1], s2.getsockname()[1]
        t0 = time.monotonic()
        self.logf = (run.out / f"serve-{device}-{int(t0)}.log").open("w")
        self.proc = subprocess.Popen(
            [PY, "-m", "robust_style", "serve", "--models", models, "--port", str(self.port),
             "--metrics-port", str(self.metrics_port), "--device", device, "--trt-cache-dir",
             cache, "--poll-seconds", "0", "--max-batch", "8", *extra],
            stdout=self.logf, stderr=subprocess.STDOUT, cwd=REPO)
        client = StyleClient(f"127.0.0.1:{self.port}")
        if not client.wait_ready(900):
            self.stop()
            raise RuntimeError(f"{device} server not ready in 900 s (see {self.logf.name})")
        self.ready_seconds = time.monotonic() - t0
        info = client.list_styles()[0]
        self.style, self.providers = info.name, list(getattr(info, "providers", []))
        client.close()
        self.stub = kgrpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{self.port}"))

    def infer(self, x: np.ndarray) -> np.ndarray:
        from robust_style.server.protos.inference import grpc_service_pb2 as kpb

        req = kpb.ModelInferRequest(model_name=self.style, raw_input_contents=[x.tobytes()])
        req.inputs.add(name="image", datatype="UINT8", shape=list(x.shape))
        resp = self.stub.ModelInfer(req, timeout=900)
        return np.frombuffer(resp.raw_output_contents[0], np.uint8).reshape(x.shape)

    def metric(self, prefix: str) -> float:
        import urllib.request

        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                      timeout=10).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(prefix))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.logf.close()


PARITY_SHAPES = [(1, 37, 53), (1, 256, 256), (8, 256, 256), (1, 720, 1280), (1, 1080, 1920)]
BEYOND = (1, 3000, 3000)  # more pixels than the default TensorRT profiles cover


def check_serve(run: Run) -> dict[str, Any]:
    import onnxruntime as ort

    model = _model(run)
    cpu = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    refs = {s: cpu.run(None, {"image": _photo(*s[1:], n=s[0])})[0]
            for s in [*PARITY_SHAPES, BEYOND]}
    cache, figures, ok = run.tmp / "trt-cache", {}, True
    for label, device in (("tensorrt_cold", "tensorrt"), ("tensorrt_restart", "tensorrt"),
                          ("cuda", "cuda")):
        before = {p: p.stat().st_mtime_ns for p in cache.rglob("*.engine")}
        srv = Server(run, device, cache, model.parent)
        try:
            f: dict[str, Any] = {"ready_seconds": round(srv.ready_seconds, 1),
                                 "providers": srv.providers}
            for s, ref in refs.items():
                f["x".join(map(str, s))] = _compare(srv.infer(_photo(*s[1:], n=s[0])), ref)
            try:
                f["fallback_total"] = srv.metric("robust_style_trt_fallback_total")
            except Exception as exc:  # noqa: BLE001 - metric not there before integration
                f["fallback_total"] = f"n/a ({exc})"
        finally:
            srv.stop()
        after = {p: p.stat().st_mtime_ns for p in cache.rglob("*.engine")}
        f["engine_files"] = len(after)
        if label == "tensorrt_restart":
            f["engines_rewritten"] = sum(after.get(p) != m for p, m in before.items())
            cold = figures["tensorrt_cold"]["ready_seconds"]
            f["ready_vs_cold"] = round(srv.ready_seconds / max(cold, 1e-6), 3)
            ok &= f["engines_rewritten"] == 0 and len(after) > 0
        fp16 = device == "tensorrt"
        worst = min(v["psnr_db"] for k, v in f.items() if isinstance(v, dict))
        ok &= worst >= (45.0 if fp16 else 50.0)
        figures[label] = f
    return {**figures, "ok": ok}


# --- 3./4. latency ----------------------------------------------------------------------------
def _median_ms(fn: Callable[[], Any], n: int) -> float:
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1000


def check_first_request(run: Run) -> dict[str, Any]:
    model = _model(run)
    srv = Server(run, "tensorrt", run.tmp / "trt-cache", model.parent)
    rng = np.random.default_rng(17)
    rows, ok = [], True
    try:
        for _ in range(10):
            h = int(rng.integers(64, 2049))
            w = int(np.clip(h * rng.uniform(0.5, 2.0), 64, 2896))
            x = _photo(h, w)
            t0 = time.perf_counter()
            srv.infer(x)
            first = (time.perf_counter() - t0) * 1000
            steady = _median_ms(lambda x=x: srv.infer(x), 5)
            rows.append({"size": f"{h}x{w}", "first_ms": round(first, 1),
                         "steady_ms": round(steady, 1), "ratio": round(first / steady, 2)})
            ok &= first <= 3 * steady
    finally:
        srv.stop()
    return {"sizes": rows, "worst_ratio": max(r["ratio"] for r in rows), "ok": ok}


def check_steady(run: Run) -> dict[str, Any]:
    import onnxruntime as ort

    from robust_style.server.tensorrt import TensorRTConfig
    from robust_style.server.tensorrt_router import create_router

    model = _model(run)
    data = model.read_bytes()
    so = ort.SessionOptions()
    cuda = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})]
    cfg = TensorRTConfig(cache_dir=str(run.tmp / "trt-cache"))
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    engines: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    router = create_router(data, sha, cfg, so, True, "image", "stylized")
    engines["tensorrt_fp16"] = router.run
    s32 = ort.InferenceSession(data, so, providers=cuda)
    engines["cuda_fp32"] = lambda x: s32.run(None, {"image": x})[0]
    if "model_fp16" in run.state:
        s16 = ort.InferenceSession(str(run.state["model_fp16"]), so, providers=cuda)
        engines["cuda_fp16_file"] = lambda x: s16.run(None, {"image": x})[0]
    cpu = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    table: dict[str, Any] = {"engine_report": router.report}
    for side in (512, 1024):
        for n in (1, 8):
            x = _photo(side, side, n)
            ref = cpu.run(None, {"image": x})[0] if n == 1 else None
            row: dict[str, Any] = {}
            for name, fn in engines.items():
                y = fn(x)  # warm (first run of the shape)
                row[name] = {"psnr_vs_cpu_fp32": _compare(y, ref)["psnr_db"] if ref is not None
                             else None}
            times: dict[str, list[float]] = {k: [] for k in engines}
            for _ in range(10):  # interleaved
                for name, fn in engines.items():
                    t0 = time.perf_counter()
                    fn(x)
                    times[name].append(time.perf_counter() - t0)
            for name in engines:
                ms = statistics.median(times[name]) * 1000
                row[name].update(ms=round(ms, 2), img_per_s=round(n / ms * 1000, 1))
            table[f"{side}x{side}_batch{n}"] = row
    table["fallbacks"] = router.fallbacks
    _chart(run, table)
    return table


def _chart(run: Run, table: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    keys = [k for k in table if "batch" in k]
    names = list(table[keys[0]])
    fig, ax = plt.subplots(figsize=(8, 4))
    for i, name in enumerate(names):
        ax.bar([j + i * 0.25 for j in range(len(keys))], [table[k][name]["ms"] for k in keys],
               0.25, label=name)
    ax.set_xticks([j + 0.25 for j in range(len(keys))], keys)
    ax.set_ylabel("ms per batch (median)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.out / "latency.png", dpi=120)


# --- 5. the project's benchmarks ------------------------------------------------------------
def check_bench_server(run: Run) -> dict[str, Any]:
    out = run.out / "bench_server"
    run.sh([PY, "benchmarks/bench_server.py", "--sizes", 256, 512, 1024, "--repeats", 3,
            "--out", out, "--model", _model(run)], timeout=900)
    return {"json": str(out / "serving_bench.json")}


def check_bench_train(run: Run) -> dict[str, Any]:
    text = run.sh([PY, "benchmarks/bench_train.py", "--device", "cuda", "--repeats", 5,
                   "--out", run.out / "bench_train.png"], timeout=900)
    return {"table": text.strip().splitlines()[-8:]}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_report(run: Run, started: float, gpu_list: list[str]) -> None:
    import onnxruntime as ort

    from robust_style.server.tensorrt import detect_environment

    env = detect_environment()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "gpus": gpu_list,
            "tensorrt": env.tensorrt_version, "onnxruntime": ort.__version__,
            "cpu": _cpu_model(),
            "load_average": os.getloadavg(), "total_seconds": round(time.monotonic() - started)}
    (run.out / "report.json").write_text(json.dumps({"meta": meta, "checks": run.checks},
                                                    indent=2, default=str) + "\n")
    lines = ["# GPU check", "", *[f"- {k}: {v}" for k, v in meta.items()], "",
             "| check | result | seconds | note |", "|---|---|---|---|"]
    lines += [f"| {c['check']} | {'ok' if c['ok'] else '**FAILED**'} | {c['seconds']} | "
              f"{c['note']} |" for c in run.checks]
    for c in run.checks:
        lines += ["", f"## {c['check']}", "", "```json",
                  json.dumps(c["figures"], indent=1, default=str), "```"]
    if (run.out / "latency.png").exists():
        lines += ["", "![latency](latency.png)"]
    (run.out / "report.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "gpu-check")
    ap.add_argument("--only", default=",".join(CHECKS), help=f"subset of {','.join(CHECKS)}")
    args = ap.parse_args(argv)
    gpu_list = gpus()
    if not gpu_list:
        print("gpu_check: no CUDA GPU on this machine (nvidia-smi lists none); nothing to check",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    import onnxruntime as ort

    ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* wheels torch installed
    run = Run(args.out, len(gpu_list))
    fns = {"train": check_train, "serve": check_serve, "first_request": check_first_request,
           "steady": check_steady, "bench_server": check_bench_server,
           "bench_train": check_bench_train}
    for name in args.only.split(","):
        run.check(name, lambda name=name: fns[name](run))
        write_report(run, started, gpu_list)
    print(f"[gpu_check] report: {args.out / 'report.md'}")
    return 0 if all(c["ok"] for c in run.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
