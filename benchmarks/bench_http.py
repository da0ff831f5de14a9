"""HTTP vs gRPC throughput of KServe infer at 512 px: REST binary, gRPC, REST JSON.

One in-process server (the bundled style), the real clients (``tritonclient.http`` with
binary tensors in and out, ``tritonclient.grpc``, ``tritonclient.http`` with JSON tensors
both ways), ``--requests`` sequential infers of a 512x512 real photo per round; rounds
interleave the three so a noisy machine hits all alike. Prints the median throughput of
each and REST's ratio to gRPC, with the CPU model.

    python benchmarks/bench_http.py --rounds 3 --requests 8
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as tcg
import tritonclient.http as tch
from machine import cpu_model
from PIL import Image

from robust_style.cli.cmd_serve import default_models_dir
from robust_style.server.app import ServerConfig, StyleServer
from robust_style.server.registry import RegistryConfig


def _photo(side: int) -> np.ndarray:
    img = Image.open(default_models_dir() / "sample.jpg").convert("RGB")
    s = min(img.size)
    img = img.crop((0, 0, s, s)).resize((side, side), Image.Resampling.BICUBIC)
    return np.asarray(img)[None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--side", type=int, default=512)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(default_models_dir() / "the-scream.onnx", Path(tmp) / "the-scream.onnx")
        cfg = ServerConfig(registry=RegistryConfig(models_dir=Path(tmp), poll_seconds=0),
                           port=0, http_port=0)
        server = StyleServer(cfg).start(load_in_background=False)
        try:
            x = _photo(args.side)
            http = tch.InferenceServerClient(f"127.0.0.1:{server.http_port}",
                                             network_timeout=600)
            grpc = tcg.InferenceServerClient(server.address)

            def rest(binary: bool) -> None:
                inp = tch.InferInput("image", list(x.shape), "UINT8")
                inp.set_data_from_numpy(x, binary_data=binary)
                out = tch.InferRequestedOutput("stylized", binary_data=binary)
                assert http.infer("the-scream", [inp], outputs=[out]).as_numpy(
                    "stylized").shape == x.shape

            def grpc_infer() -> None:
                inp = tcg.InferInput("image", list(x.shape), "UINT8")
                inp.set_data_from_numpy(x)
                assert grpc.infer("the-scream", [inp]).as_numpy("stylized").shape == x.shape

            kinds = {"REST binary": lambda: rest(True), "gRPC": grpc_infer,
                     "REST JSON": lambda: rest(False)}
            for fn in kinds.values():  # warm up each path once
                fn()
            rates: dict[str, list[float]] = {k: [] for k in kinds}
            for _ in range(args.rounds):
                for name, fn in kinds.items():
                    t0 = time.perf_counter()
                    for _ in range(args.requests):
                        fn()
                    rates[name].append(args.requests / (time.perf_counter() - t0))
        finally:
            server.stop(0)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"CPU: {cpu_model()}; {args.side}x{args.side} px, {args.rounds} interleaved rounds "
          f"of {args.requests} sequential infers, medians")
    for name, rate in med.items():
        print(f"  {name:12s} {rate:7.2f} infer/s  ({rate / med['gRPC']:.1%} of gRPC)")


if __name__ == "__main__":
    main()
