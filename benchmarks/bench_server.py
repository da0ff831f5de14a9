"""Serving benchmark: bare ONNX Runtime vs the gRPC server, 1 vs 4 clients, start-up, RSS.

One run measures, at 256 and 512 px (square crops of a real photo):

* ``bare``: ``session.run`` on a uint8 NHWC batch of 1 (the floor);
* ``in-process``: decode PNG + ``session.run`` + encode PNG with the server's own code;
* ``gRPC PNG``: a ``Stylize`` round trip to a ``robust-style serve`` process;
* ``KServe raw``: a ``ModelInfer`` round trip with the raw uint8 tensor;
* 1 vs 4 concurrent ``Stylize`` clients: throughput, p50, p95;
* server start-up (process start to health SERVING) and its RSS (peak, after the load).

Figures are medians of ``--repeats`` runs. The model is the bundled style if there is one,
else ``--model``, else a freshly exported default-size TransformerNet (random weights: speed
does not depend on them). Prints a table, saves ``serving_bench.png`` and ``.json`` in
``--out``.

    python benchmarks/bench_server.py --repeats 5 --out docs
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
from PIL import Image

from robust_style.netutil import ServeProcess, serve_process

REPO = Path(__file__).resolve().parents[1]


def _model(args: argparse.Namespace, tmp: Path) -> Path:
    if args.model:
        return Path(args.model)
    bundled = sorted((REPO / "src" / "robust_style" / "models").glob("*.onnx"))
    if bundled:
        return bundled[0]
    import torch

    from robust_style.contract import StyleMetadata
    from robust_style.export import export_onnx
    from robust_style.transformer_net import TransformerNet, TransformerNetConfig

    torch.manual_seed(0)
    print("exporting a default-size TransformerNet (random weights) ...", flush=True)
    return export_onnx(TransformerNet(TransformerNetConfig()), tmp / "bench.onnx",
                       StyleMetadata(name="bench"))


def _photo(side: int) -> np.ndarray:
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize((side, side), Image.Resampling.LANCZOS)
    return np.asarray(img)


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, round-robin, so that load changes on a shared
    machine hit every variant alike (the ratios are what matter)."""
    for fn in fns.values():
        fn()  # warm-up (first call per shape)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def _rss_mb(pid: int, key: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _concurrent(target: str, style: str, png: bytes, clients: int, per_client: int) -> dict:
    from robust_style.server.protos.robust_style.v1 import style_transfer_pb2 as pb
    from robust_style.server.protos.robust_style.v1 import style_transfer_pb2_grpc as pb_grpc

    lat: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def work() -> None:
        stub = pb_grpc.StyleTransferStub(grpc.insecure_channel(target))
        req = pb.StylizeRequest(style=style, image=png)
        stub.Stylize(req)  # connect + warm
        barrier.wait()
        for _ in range(per_client):
            t = time.perf_counter()
            stub.Stylize(req, timeout=600)
            with lock:
                lat.append(time.perf_counter() - t)

    threads = [threading.Thread(target=work) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    lat.sort()
    return {"throughput": len(lat) / elapsed, "p50": float(np.percentile(lat, 50)),
            "p95": float(np.percentile(lat, 95))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="ONNX style model (default: see above)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "docs")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_server_"))
    model = _model(args, tmp)
    models_dir = tmp / "models"
    models_dir.mkdir()
    (models_dir / model.name).write_bytes(model.read_bytes())

    with serve_process(["--models", str(models_dir), "--poll-seconds", "0"],
                       env={**os.environ}) as served:
        results, ready_s, rss_ready, rss_peak = _measure(args, model, served)
    _report(results, ready_s, rss_ready, rss_peak, served.proc.returncode, args, model)
    return 0


def _measure(args: argparse.Namespace, model: Path, served: ServeProcess,
             ) -> tuple[dict[str, dict], float, float, float]:
    """Per size: the bare engine, in-process, gRPC PNG and KServe raw, then 1 and 4 clients."""
    import grpc
    import onnxruntime as ort

    from robust_style.imageio import decode_image
    from robust_style.server import images
    from robust_style.server.client import StyleClient
    from robust_style.server.protos.inference import grpc_service_pb2 as kpb
    from robust_style.server.protos.inference import grpc_service_pb2_grpc as kgrpc
    from robust_style.server.protos.robust_style.v1 import style_transfer_pb2 as pb
    from robust_style.server.protos.robust_style.v1 import style_transfer_pb2_grpc as pb_grpc

    proc, target, ready_s = served.proc, served.target, served.ready_seconds
    client = StyleClient(target)
    rss_ready = _rss_mb(proc.pid, "VmRSS")
    style = client.list_styles()[0].name
    print(f"model {model.name}: style {style!r}; server ready in {ready_s:.2f} s, "
          f"RSS {rss_ready:.0f} MB", flush=True)

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    stub = pb_grpc.StyleTransferStub(grpc.insecure_channel(target))
    kstub = kgrpc.GRPCInferenceServiceStub(grpc.insecure_channel(target))
    results: dict[str, dict] = {}
    try:
        for side in args.sizes:
            x = _photo(side)
            png = _png(x)
            batch = x[None]
            r: dict[str, float | dict] = {}

            kreq = kpb.ModelInferRequest(model_name=style, raw_input_contents=[batch.tobytes()])
            kreq.inputs.add(name="image", datatype="UINT8", shape=list(batch.shape))

            def bare(batch: np.ndarray = batch) -> None:
                sess.run(None, {"image": batch})

            def inproc(png: bytes = png) -> None:
                arr = decode_image(png, 10**8)
                y = sess.run(None, {"image": arr[None]})[0][0]
                images.encode_image(y, "png")

            def grpc_png(png: bytes = png) -> None:
                stub.Stylize(pb.StylizeRequest(style=style, image=png), timeout=600)

            def kserve_raw(kreq: kpb.ModelInferRequest = kreq) -> None:
                kstub.ModelInfer(kreq, timeout=600)

            fns = {"bare": bare, "in-process": inproc, "gRPC PNG": grpc_png,
                   "KServe raw": kserve_raw}
            for name, times in _interleaved(fns, args.repeats).items():
                r[name] = statistics.median(times)
                print(f"  {side}px {name:<11} median {r[name] * 1000:8.1f} ms", flush=True)
            for n in (1, 4):
                c = _concurrent(target, style, png, n, args.repeats)
                r[f"{n} client(s)"] = c
                print(f"  {side}px {n} client(s): {c['throughput']:.2f} img/s, "
                      f"p50 {c['p50'] * 1000:.0f} ms, p95 {c['p95'] * 1000:.0f} ms", flush=True)
            results[str(side)] = r
        rss_peak = _rss_mb(proc.pid, "VmHWM")
    finally:
        client.close()
    return results, ready_s, rss_ready, rss_peak


def _report(results: dict, ready_s: float, rss_ready: float, rss_peak: float, code: int,
            args: argparse.Namespace, model: Path) -> None:
    print("\n| size | bare run | in-process | gRPC PNG | KServe raw | gRPC/bare | "
          "1 client img/s | 4 clients img/s | 4/1 | p50 (4) | p95 (4) | p95/p50 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for side, r in results.items():
        c1, c4 = r["1 client(s)"], r["4 client(s)"]
        print(f"| {side} | {r['bare'] * 1000:.0f} ms | {r['in-process'] * 1000:.0f} ms | "
              f"{r['gRPC PNG'] * 1000:.0f} ms | {r['KServe raw'] * 1000:.0f} ms | "
              f"{r['gRPC PNG'] / r['bare']:.3f} | {c1['throughput']:.2f} | "
              f"{c4['throughput']:.2f} | {c4['throughput'] / c1['throughput']:.2f} | "
              f"{c4['p50'] * 1000:.0f} ms | {c4['p95'] * 1000:.0f} ms | "
              f"{c4['p95'] / c4['p50']:.2f} |")
    print(f"\nstart-up to SERVING: {ready_s:.2f} s; RSS at ready {rss_ready:.0f} MB, "
          f"peak {rss_peak:.0f} MB; exit code after SIGTERM: {code}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"model": model.name, "repeats": args.repeats, "ready_seconds": ready_s,
               "rss_ready_mb": rss_ready, "rss_peak_mb": rss_peak, "sizes": results,
               "cpu_count": os.cpu_count(), "loadavg_end": os.getloadavg()[0],
               "exit_code": code}
    (args.out / "serving_bench.json").write_text(json.dumps(summary, indent=2))
    _chart(results, args.out / "serving_bench.png", ready_s, rss_peak)


def _chart(results: dict, path: Path, ready_s: float, rss_peak: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(results)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    names = ["bare", "in-process", "gRPC PNG", "KServe raw"]
    w = 0.2
    for i, n in enumerate(names):
        a1.bar(np.arange(len(sizes)) + (i - 1.5) * w, [results[s][n] * 1000 for s in sizes], w,
               label=n)
    a1.set_xticks(range(len(sizes)), [f"{s} px" for s in sizes])
    a1.set_ylabel("median latency (ms)")
    a1.set_title("one request: bare run vs server")
    a1.legend()
    for i, n in enumerate(["1 client(s)", "4 client(s)"]):
        a2.bar(np.arange(len(sizes)) + (i - 0.5) * 0.35,
               [results[s][n]["throughput"] for s in sizes], 0.35, label=n)
    a2.set_xticks(range(len(sizes)), [f"{s} px" for s in sizes])
    a2.set_ylabel("throughput (images/s)")
    a2.set_title(f"concurrency (ready {ready_s:.1f} s, peak RSS {rss_peak:.0f} MB)")
    a2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"saved {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    sys.exit(main())
