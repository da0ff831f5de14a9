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
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO / "benchmarks"))
from gpu_check_serving import (  # noqa: E402 - the sibling module, found through sys.path
    check_first_request,
    check_serve,
    check_steady,
    model_path,
)
from machine import cpu_model  # noqa: E402 - benchmarks/machine.py, through sys.path

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
        except Exception as exc:
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


# --- 5. the project's benchmarks ------------------------------------------------------------
def check_bench_server(run: Run) -> dict[str, Any]:
    out = run.out / "bench_server"
    run.sh([PY, "benchmarks/bench_server.py", "--sizes", 256, 512, 1024, "--repeats", 3,
            "--out", out, "--model", model_path(run)], timeout=900)
    return {"json": str(out / "serving_bench.json")}


def check_bench_train(run: Run) -> dict[str, Any]:
    text = run.sh([PY, "benchmarks/bench_train.py", "--device", "cuda", "--repeats", 5,
                   "--out", run.out / "bench_train.png"], timeout=900)
    return {"table": text.strip().splitlines()[-8:]}


def write_report(run: Run, started: float, gpu_list: list[str]) -> None:
    import onnxruntime as ort

    from robust_style.server.engines.tensorrt import detect_environment

    env = detect_environment()
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "gpus": gpu_list,
            "tensorrt": env.tensorrt_version, "onnxruntime": ort.__version__,
            "cpu": cpu_model(),
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
