"""How long `robust-style weights download` spends on transfer, sha256 and the safe-load
check, and what the sha256 memo saves, for a MadryLab-layout ResNet-50 checkpoint of the
real size (float32 model + attacker copies, ~205 MB) served from 127.0.0.1.

    /work/venv/bin/python benchmarks/bench_weights.py [--repeats 3] [--out DIR]

Prints medians and saves a PNG bar chart. Localhost transfer is an upper bound on speed:
over the internet the transfer dominates and the checks are a small, fixed cost.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers_checkpoints import random_resnet50, save_madry_checkpoint

from robust_style.fileio import sha256_file
from robust_style.perceptual.weights.cache import file_sha256
from robust_style.perceptual.weights.download import DownloadConfig, _fetch, download
from robust_style.perceptual.weights.registry import WeightsEntry
from robust_style.perceptual.weights.store import check_loadable


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        served = tmp / "srv"
        served.mkdir()
        ckpt = save_madry_checkpoint(served / "imagenet_l2_3_0.pt", random_resnet50(seed=0))
        size = ckpt.stat().st_size
        srv = ThreadingHTTPServer(("127.0.0.1", 0),
                                  functools.partial(_Quiet, directory=str(served)))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{srv.server_address[1]}/imagenet_l2_3_0.pt"
        entry = WeightsEntry(name="bench", backbone="robust-resnet50", training="bench",
                             urls=(url,), size=size, sha256=sha256_file(ckpt), layout="madry",
                             licence="MIT", citation="bench")
        cfg = DownloadConfig(progress=False)
        part = tmp / "x.part"

        def transfer() -> None:
            part.unlink(missing_ok=True)
            _fetch(url, part, entry, cfg)

        def full() -> None:
            download(entry, home=tmp / "home", config=cfg, force=True)

        figures = {
            "transfer (urllib, localhost)": _median(transfer, args.repeats),
            "sha256": _median(lambda: sha256_file(ckpt), args.repeats),
            "safe load + strict ResNet-50": _median(lambda: check_loadable(ckpt, entry.backbone),
                                                    args.repeats),
            "whole download command": _median(full, args.repeats),
            "file_sha256, memo hit": _median(lambda: file_sha256(ckpt, home=tmp / "home"),
                                             args.repeats),
        }
        srv.shutdown()
        srv.server_close()
    print(f"checkpoint: MadryLab layout ResNet-50, {size / 1e6:.1f} MB; "
          f"median of {args.repeats}; torch threads 1")
    for k, v in figures.items():
        print(f"  {k:32s} {v * 1000:9.1f} ms")
    print(f"  transfer throughput              {size / 1e6 / figures['transfer (urllib, localhost)']:9.1f} MB/s")
    print(f"  sha256 throughput                {size / 1e6 / figures['sha256']:9.1f} MB/s")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = list(figures)
    ax.barh(names, [figures[n] * 1000 for n in names], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel("ms (median)")
    ax.set_title(f"weights download of a {size / 1e6:.0f} MB checkpoint from 127.0.0.1")
    fig.tight_layout()
    png = args.out / "bench_weights.png"
    fig.savefig(png, dpi=120)
    print(f"chart: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
