"""The serving checks of ``scripts/gpu_check.py``: a real server on TensorRT and CUDA.

``check_serve`` (parity with CPU fp32, engine cache reuse on restart, the fallback beyond
every profile), ``check_first_request`` (first request at 10 random sizes vs steady) and
``check_steady`` (latency and throughput at 512² and 1024², batch 1 and 8, fp16 PSNR).
Each takes the :class:`gpu_check.Run` and returns its figures (``ok``: the verdict).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from robust_style.netutil import free_port, serve_process
from robust_style.pixels import psnr

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
Run = Any  # gpu_check.Run (not imported: gpu_check imports this module)


def model_path(run: Run) -> Path:
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


def _compare(y: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    d = np.abs(y.astype(np.int16) - ref)
    # 999 dB for identical images: JSON has no infinity.
    return {"psnr_db": round(min(psnr(y, ref), 999.0), 2), "within_1_lsb": round(float(np.mean(d <= 1)), 5),
            "max_abs": int(d.max())}


class Server:
    """A ``robust-style serve`` process and a KServe raw-tensor client."""

    def __init__(self, run: Run, device: str, cache: Path, models: Path, *extra: str) -> None:
        import grpc

        from robust_style.server.client import StyleClient
        from robust_style.server.protos.inference import grpc_service_pb2_grpc as kgrpc

        self.metrics_port = free_port()
        self.logf = (run.out / f"serve-{device}-{int(time.monotonic())}.log").open("w")
        self._stack = contextlib.ExitStack()
        self._stack.callback(self.logf.close)
        try:
            served = self._stack.enter_context(serve_process(
                ["--models", str(models), "--metrics-port", str(self.metrics_port), "--device",
                 device, "--trt-cache-dir", str(cache), "--poll-seconds", "0", "--max-batch", "8",
                 *extra], command=[PY, "-m", "robust_style"], quiet=False, ready_timeout=900,
                stdout=self.logf, stderr=subprocess.STDOUT, cwd=str(REPO)))
        except RuntimeError as e:
            self._stack.close()
            raise RuntimeError(f"{device} server: {e} (see {self.logf.name})") from e
        self.proc, self.port, self.ready_seconds = served.proc, served.port, served.ready_seconds
        client = StyleClient(served.target)
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

    def metrics_text(self) -> str:
        import urllib.request

        return urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                      timeout=10).read().decode()

    def metric(self, prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in self.metrics_text().splitlines()
                   if line.startswith(prefix))

    def engine_info(self) -> str:
        """The ``robust_style_engine_info`` labels: engine and precision after the gate."""
        return next((line.split("{", 1)[1].rsplit("}", 1)[0]
                     for line in self.metrics_text().splitlines()
                     if line.startswith("robust_style_engine_info{")), "")

    def gpu_memory_mb(self) -> float | None:
        """GPU memory the server process holds (``nvidia-smi``): checks the activation
        budget of the TensorRT profiles (docs/serving.md, "TensorRT profiles")."""
        try:
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                                  "--format=csv,noheader,nounits"], capture_output=True,
                                 text=True, timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        used = [float(m) for pid, m in (line.split(",")[:2] for line in out.splitlines()
                                        if "," in line) if int(pid) == self.proc.pid]
        return sum(used) if used else None

    def stop(self) -> None:
        self._stack.close()


PARITY_SHAPES = [(1, 37, 53), (1, 256, 256), (8, 256, 256), (1, 720, 1280), (1, 1080, 1920)]
BEYOND = (1, 3000, 3000)  # more pixels than the default TensorRT profiles cover


def check_serve(run: Run) -> dict[str, Any]:
    import onnxruntime as ort

    model = model_path(run)
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
                                 "providers": srv.providers, "engine": srv.engine_info(),
                                 "gpu_memory_mb_after_warmup": srv.gpu_memory_mb()}
            for s, ref in refs.items():
                f["x".join(map(str, s))] = _compare(srv.infer(_photo(*s[1:], n=s[0])), ref)
            try:
                f["fallback_total"] = srv.metric("robust_style_trt_fallback_total")
            except Exception as exc:
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
    model = model_path(run)
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

    from robust_style.server.engines.tensorrt import TensorRTConfig
    from robust_style.server.engines.tensorrt_router import create_router

    model = model_path(run)
    data = model.read_bytes()
    so = ort.SessionOptions()
    cuda = [("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})]
    cfg = TensorRTConfig(cache_dir=str(run.tmp / "trt-cache"))
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
            # the CPU reference of 8 x 1024² takes long; the other three cover both profiles
            ref = cpu.run(None, {"image": x})[0] if n * side * side <= 8 * 512 * 512 else None
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
