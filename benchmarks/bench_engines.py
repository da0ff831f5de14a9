"""CPU engines benchmark: PyTorch eager vs ONNX Runtime vs OpenVINO (f32, bf16) vs gRPC.

One run, on the bundled style ``the-scream.onnx`` (Johnson et al. 2016 network, channels
32/64/128, 5 residual blocks), at ``--sizes`` px (square crops of real photos from
``skimage.data``), batch 1 and 4, all variants interleaved round-robin (so that load
changes on a shared machine hit every variant alike), medians of ``--repeats``:

* ``pytorch``: PyTorch eager fp32, ``TransformerNet`` + ``ServingWrapper`` carrying the
  ONNX file's own weights (the initializers are the state dict), ``torch.inference_mode``;
* ``ort-fp32``: ONNX Runtime CPU execution provider, fp32 (the server's engine before
  OpenVINO; also the PSNR reference);
* ``ov-fp32`` / ``ov-bf16``: OpenVINO CPU plugin, ``INFERENCE_PRECISION_HINT`` f32 / bf16
  (bf16 only where the CPU has it);
* ``auto``: the engine ``EngineSelector`` picks (gate included); its bare-call figure is
  the matching row above;
* ``grpc-png``: ``Stylize`` round trips (PNG in, PNG out) to a ``robust-style serve
  --engine auto`` process; batch 4 = 4 concurrent requests;
* ``grpc-raw``: one KServe ``ModelInfer`` with the raw uint8 NxHxWx3 tensor.

Then at ``--throughput-size``: ``Stylize`` throughput of 1 client vs 4 concurrent clients
on one style, and 4 clients spread over two styles (two copies of the model: the
process-wide CPU budget must keep them from oversubscribing the cores).

Prints tables, saves ``engines_bench.png`` and ``.json`` in ``--out``.

    nice -n 5 python benchmarks/bench_engines.py --out docs > bench_engines.log 2>&1 &
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from robust_style.netutil import ServeProcess, serve_process

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "src" / "robust_style" / "models" / "the-scream.onnx"
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
VARIANTS = ("pytorch", "ort-fp32", "ov-fp32", "ov-bf16", "grpc-png", "grpc-raw")


def cpu_info() -> dict:
    """CPU model and bf16-relevant flags, read at run time."""
    name, flags = "unknown", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and name == "unknown":
            name = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    from robust_style.server.engines import available_cores, openvino_status

    ov = openvino_status()
    return {"model": name, "cores": available_cores(), "openvino": ov.version,
            "openvino_device": ov.device, "openvino_bf16": ov.bf16,
            "flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})}


def photos(side: int, n: int) -> np.ndarray:
    from skimage import data

    return np.stack([np.asarray(ImageOps.fit(Image.fromarray(getattr(data, PHOTOS[i % 4])()),
                                             (side, side), Image.Resampling.LANCZOS))
                     for i in range(n)])


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def torch_runner(model: Path, threads: int):
    """PyTorch eager fp32 with the ONNX file's weights (checked: PSNR vs ONNX Runtime).

    ``threads`` 0: the faster of 1 thread and one per core, timed at 256 px. On a loaded
    machine PyTorch's OpenMP barriers wait for descheduled threads and several threads can
    be many times slower than one, so the baseline gets its better setting, not its worst.
    """
    import onnx
    import torch
    from onnx import numpy_helper

    from robust_style.export.onnx_export import ServingWrapper
    from robust_style.transformer_net import TransformerNet, TransformerNetConfig

    proto = onnx.load(str(model))
    meta = {p.key: p.value for p in proto.metadata_props}
    net = TransformerNet(TransformerNetConfig.from_dict(json.loads(meta["robust_style.net_config"])))
    inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
             for t in proto.graph.initializer}
    state = {k: inits[k] for k in net.state_dict()}  # KeyError = the layouts differ
    net.load_state_dict(state)
    wrapper = ServingWrapper(net).eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return wrapper(torch.from_numpy(batch)).numpy()

    if threads <= 0:
        from robust_style.server.engines import available_cores

        x, best = photos(256, 1), {}
        for n in sorted({1, available_cores()}):
            torch.set_num_threads(n)
            run(x)
            best[n] = statistics.median(_timed(run, x) for _ in range(3))
        threads = min(best, key=best.get)
        print("PyTorch threads: " + ", ".join(f"{n}: {t * 1000:.0f} ms" for n, t in best.items())
              + f" at 256 px -> {threads}", flush=True)
    torch.set_num_threads(threads)
    run.threads = threads  # type: ignore[attr-defined]
    return run


def _timed(fn, x: np.ndarray) -> float:
    t = time.perf_counter()
    fn(x)
    return time.perf_counter() - t


def start_server(models: Path, threads: int) -> contextlib.AbstractContextManager[ServeProcess]:
    return serve_process(["--models", str(models), "--poll-seconds", "0", "--engine", "auto",
                          "--intra-op-threads", str(threads), "--max-message-mb", "256"],
                         ready_timeout=600)


def second_style(src: Path, dst: Path, name: str) -> None:
    import onnx

    proto = onnx.load(str(src))
    for p in proto.metadata_props:
        if p.key == "robust_style.name":
            p.value = name
    onnx.save(proto, str(dst))


def interleaved(fns: dict, repeats: int, gap: float) -> dict[str, float]:
    """Medians of ``repeats`` round-robin calls, ``gap`` seconds of rest before each call.

    The rest lets the previous runtime's worker threads stop spinning (OpenMP in PyTorch,
    ONNX Runtime's thread pool and OpenVINO all busy-wait for a while after a run); without
    it each variant pays for its predecessor's spinning in this one process.
    """
    for fn in fns.values():
        fn()  # warm-up: first call at a shape
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            time.sleep(gap)
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def throughput(client_for, styles: list[str], img: bytes, clients: int, per_client: int
               ) -> float:
    barrier = threading.Barrier(clients + 1)

    def work(i: int) -> None:
        client = client_for()
        style = styles[i % len(styles)]
        client.stylize(img, style)  # connect + warm
        barrier.wait()
        for _ in range(per_client):
            client.stylize(img, style, timeout=600)
        client.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return clients * per_client / (time.perf_counter() - start)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--large", type=int, default=1024,
                    help="from this size: --repeats-large, and PyTorch timed once")
    ap.add_argument("--repeats-large", type=int, default=3, help="repeats at >= --large px")
    ap.add_argument("--threads", type=int, default=0, help="threads per run (0 = all cores)")
    ap.add_argument("--torch-threads", type=int, default=0,
                    help="PyTorch threads (0 = the faster of 1 and all cores, timed)")
    ap.add_argument("--throughput-size", type=int, default=512)
    ap.add_argument("--requests", type=int, default=4, help="requests per client")
    ap.add_argument("--gap", type=float, default=0.5,
                    help="seconds of rest before each timed call (see interleaved())")
    ap.add_argument("--out", type=Path, default=REPO / "docs")
    args = ap.parse_args()

    import tritonclient.grpc as tc

    from robust_style.server.client import StyleClient
    from robust_style.server.engines import (
        EngineConfig,
        EngineSelector,
        OnnxRuntimeEngine,
        OpenVINOEngine,
        ProviderConfig,
        psnr,
    )

    info = cpu_info()
    load0 = os.getloadavg()
    print(f"CPU {info['model']} ({info['cores']} cores; flags {info['flags']}; OpenVINO "
          f"{info['openvino']} bf16 {info['openvino_bf16']}); load average {load0[0]:.1f}",
          flush=True)
    data = MODEL.read_bytes()
    providers = ProviderConfig(intra_op_threads=args.threads)
    ort_fp32 = OnnxRuntimeEngine(data, providers, [("CPUExecutionProvider", {})])
    torch_run = torch_runner(MODEL, args.torch_threads)
    bare = {"pytorch": torch_run, "ort-fp32": ort_fp32.run,
            "ov-fp32": OpenVINOEngine(data, "fp32", args.threads).run}
    if info["openvino_bf16"]:
        bare["ov-bf16"] = OpenVINOEngine(data, "bf16", args.threads).run
    args.torch_threads_used = torch_run.threads  # type: ignore[attr-defined]
    auto = EngineSelector(EngineConfig(providers=providers)).load(data, 128, "bench")
    auto_key = {"onnxruntime": "ort-fp32", "openvino": f"ov-{auto.engine.precision}"}[
        auto.engine.name]
    print(f"auto engine: {auto.engine.describe()} [{auto.note}] -> row {auto_key}", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="bench_engines_"))
    models = tmp / "models"
    models.mkdir()
    (models / MODEL.name).write_bytes(data)
    second_style(MODEL, models / "scream-b.onnx", "scream-b")
    t0 = time.perf_counter()
    stack = contextlib.ExitStack()
    target = stack.enter_context(start_server(models, args.threads)).target
    client = StyleClient(target)
    served = {s.name: f"{s.engine} {s.precision}" for s in client.list_styles()}
    print(f"server ready in {time.perf_counter() - t0:.1f} s: {served}", flush=True)
    kserve = tc.InferenceServerClient(target)
    pool = ThreadPoolExecutor(4)
    style = "the-scream"

    results: dict[str, dict] = {}
    try:
        for side in args.sizes:
            for n in args.batches:
                x = photos(side, n)
                pngs = [png(im) for im in x]
                inp = tc.InferInput("image", list(x.shape), "UINT8")
                inp.set_data_from_numpy(x)
                fns = {k: (lambda f=f, x=x: f(x)) for k, f in bare.items()}
                fns["grpc-png"] = lambda pngs=pngs: list(pool.map(
                    lambda p: client.stylize(p, style, timeout=1200).image, pngs))
                fns["grpc-raw"] = lambda inp=inp: kserve.infer(
                    style, [inp], client_timeout=1200).as_numpy("stylized")
                ref = ort_fp32.run(x)
                quality = {}
                for k, fn in fns.items():
                    time.sleep(args.gap)
                    y = fn()
                    if k == "grpc-png":
                        y = np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in y])
                    quality[k] = psnr(y, ref)
                reps = args.repeats_large if side >= args.large else args.repeats
                slow = {}
                if side >= args.large:  # PyTorch eager: minutes of CPU per call; timed once
                    time.sleep(args.gap)
                    slow["pytorch"] = _timed(torch_run, x)
                    del fns["pytorch"]
                med = {**slow, **interleaved(fns, reps, args.gap)}
                key = f"{side}x{n}"
                results[key] = {"side": side, "batch": n, "repeats": reps, "median_s": med,
                                "single_call": sorted(slow),
                                "psnr_db": quality, "load": os.getloadavg()[0]}
                row = "  ".join(f"{k} {v * 1000:.0f} ms ({quality[k]:.1f} dB)"
                                for k, v in med.items())
                print(f"{key}: {row}; load {os.getloadavg()[0]:.1f}", flush=True)
        img = png(photos(args.throughput_size, 1)[0])
        tput = {
            "1 client": throughput(lambda: StyleClient(target), [style], img, 1,
                                   4 * args.requests),
            "4 clients": throughput(lambda: StyleClient(target), [style], img, 4,
                                    args.requests),
            "4 clients, 2 styles": throughput(lambda: StyleClient(target),
                                              [style, "scream-b"], img, 4, args.requests),
        }
        done = ", ".join(f"{k} {v:.2f} img/s" for k, v in tput.items())
        print(f"throughput at {args.throughput_size} px: {done}", flush=True)
    finally:
        pool.shutdown()
        client.close()
        stack.close()
    report(results, tput, info, auto_key, auto.engine.describe(), served, load0, args)
    return 0


def report(results: dict, tput: dict, info: dict, auto_key: str, auto_desc: str,
           served: dict, load0: tuple, args: argparse.Namespace) -> None:
    print(f"\nCPU: {info['model']}, {info['cores']} cores, flags {', '.join(info['flags'])}; "
          f"OpenVINO {info['openvino']} (bf16: {info['openvino_bf16']}); load average "
          f"{load0[0]:.1f} at start, {os.getloadavg()[0]:.1f} at the end; auto = {auto_desc}; "
          f"PyTorch {args.torch_threads_used} thread(s); 'x1' = timed once")
    cols = [v for v in VARIANTS if any(v in r["median_s"] for r in results.values())]
    print("\n| size | batch | " + " | ".join(cols) + " | auto/ORT | auto/PyTorch | raw/bare |")
    print("|---|---|" + "---|" * (len(cols) + 3))
    for r in results.values():
        m = r["median_s"]
        cells = [f"{m[c] * 1000:.0f} ms" + (" x1" if c in r["single_call"] else "")
                 + (f" ({r['psnr_db'][c]:.0f} dB)" if np.isfinite(r["psnr_db"][c]) else "")
                 for c in cols]
        a = m[auto_key]
        print(f"| {r['side']} | {r['batch']} | " + " | ".join(cells) +
              f" | {m['ort-fp32'] / a:.2f}x | {m['pytorch'] / a:.2f}x | "
              f"{m['grpc-raw'] / a:.3f} |")
    one = tput["1 client"]
    print(f"\nthroughput at {args.throughput_size} px (Stylize PNG): " + ", ".join(
        f"{k} {v:.2f} img/s ({v / one:.2f}x)" for k, v in tput.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"cpu": info, "torch_threads": args.torch_threads_used,
               "loadavg_start": load0[0], "loadavg_end": os.getloadavg()[0],
               "auto": auto_desc, "auto_row": auto_key, "served": served,
               "results": results, "throughput_img_s": tput,
               "throughput_size": args.throughput_size}
    (args.out / "engines_bench.json").write_text(json.dumps(summary, indent=2))
    chart(results, tput, info, auto_key, args.out / "engines_bench.png")


def chart(results: dict, tput: dict, info: dict, auto_key: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results)
    cols = [v for v in VARIANTS if v in results[keys[0]]["median_s"]]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.5), width_ratios=[3, 1])
    w = 0.8 / len(cols)
    for i, c in enumerate(cols):
        speed = [results[k]["median_s"]["ort-fp32"] / results[k]["median_s"][c] for k in keys]
        label = c + (" (= auto)" if c == auto_key else "")
        a1.bar(np.arange(len(keys)) + (i - (len(cols) - 1) / 2) * w, speed, w, label=label)
    a1.axhline(1.0, color="k", lw=0.6)
    a1.set_xticks(range(len(keys)), [f"{results[k]['side']} px, N={results[k]['batch']}"
                                     for k in keys], fontsize=8)
    a1.set_ylabel("speed vs ONNX Runtime CPU fp32 (x)")
    a1.set_title(f"median per batch, {info['model']}, {info['cores']} cores")
    a1.legend(fontsize=8, ncol=2)
    a2.bar(range(len(tput)), list(tput.values()), color=["C0", "C1", "C2"])
    a2.set_xticks(range(len(tput)), list(tput), fontsize=8)
    a2.set_ylabel("images/s")
    a2.set_title("Stylize throughput (auto engine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"saved {path} and {path.with_suffix('.json')}")


if __name__ == "__main__":
    sys.exit(main())
