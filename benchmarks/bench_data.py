"""Is data loading on the training step's critical path? The real loader on real photos.

Builds the training data loader exactly as ``robust-style train`` does
(:func:`~robust_style.transformer_net.data.make_loader` over an
:class:`~robust_style.transformer_net.data.ImageFolderDataset` and the run's
:class:`~robust_style.transformer_net.data.StepSampler`) and consumes batches with a
stand-in for the step that takes ``--step-s`` seconds without using the CPU (a sleep), so
what is measured is only the loader: the time ``next(loader)`` blocks per step. With
``--workers 0`` that is the full cost of decoding, resizing and cropping a batch on the
main thread; with workers it should be ~0 after the first batch (worker start-up).

The real training loop logs the same wait per log interval (``log.csv``'s
``data_wait_s``), with the real step competing with the workers for the CPU.

    python benchmarks/bench_data.py --photos photos/ --size 256 --batch 4 --step-s 1.5
    python benchmarks/bench_data.py            # scikit-image photos, written to a temp dir
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from machine import cpu_model

from robust_style.transformer_net.data import (
    ImageFolderDataset,
    StepSampler,
    find_images,
    make_loader,
)

_SKIMAGE = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def skimage_photos(folder: Path) -> Path:
    """Real photos shipped with scikit-image, as PNG files in ``folder``."""
    from PIL import Image
    from skimage import data

    for name in _SKIMAGE:
        Image.fromarray(getattr(data, name)()).save(folder / f"{name}.png")
    return folder


def measure(files: list[Path], size: int, batch: int, workers: int, steps: int,
            step_s: float) -> dict[str, float]:
    dataset = ImageFolderDataset(files, size)
    sampler = StepSampler(len(dataset), batch, seed=0, start_step=0, total_steps=steps)
    loader = iter(make_loader(dataset, sampler, batch, workers))
    waits: list[float] = []
    c0 = time.process_time()
    for _ in range(steps):
        t0 = time.perf_counter()
        next(loader)
        waits.append(time.perf_counter() - t0)
        time.sleep(step_s)  # the training step, off the CPU
    main_cpu = time.process_time() - c0
    later = waits[1:]
    return {"first_s": waits[0], "median_ms": 1e3 * statistics.median(later),
            "max_ms": 1e3 * max(later), "share": sum(later) / (sum(later) + step_s * len(later)),
            "main_cpu_ms_per_batch": 1e3 * main_cpu / steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, help="folder of photos (default: scikit-image's)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--step-s", type=float, default=1.0,
                    help="seconds the stand-in step takes (a real 256 px step: 1-4 s here)")
    ap.add_argument("--workers", default="0,1,2")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.photos or skimage_photos(Path(tmp))
        files = find_images(folder)
        mb = sum(f.stat().st_size for f in files) / 1e6
        print(f"# data loader, {len(files)} photos ({mb:.1f} MB) in {folder}, {args.size} px crops, "
              f"batch {args.batch}, stand-in step {args.step_s} s, {args.steps} steps; "
              f"{cpu_model()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
        print("\n| workers | first batch s | wait per step, median ms | max ms | share of step "
              "time waiting | main-process CPU ms per batch |\n|---|---|---|---|---|---|")
        for w in (int(v) for v in args.workers.split(",")):
            r = measure(files, args.size, args.batch, w, args.steps, args.step_s)
            print(f"| {w} | {r['first_s']:.2f} | {r['median_ms']:.1f} | {r['max_ms']:.1f} | "
                  f"{100 * r['share']:.1f}% | {r['main_cpu_ms_per_batch']:.1f} |", flush=True)
        print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
