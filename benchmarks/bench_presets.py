"""Frames per second of each architecture preset, bare and end to end, and the Pareto chart (issue 23).

``speed``: the style models given (default: every preset with random weights, since speed
does not depend on them, plus the two bundled styles) are loaded through the server's own
engine selection (:class:`EngineSelector`: OpenVINO bf16 where the CPU has it, int8 only
if it passes the gate and is faster) and timed, per round and interleaved, at 640x360
and 1280x720:

* ``bare``: the engine's ``run`` on one frame at a time, in this process;
* ``local``: ``robust-style stylize clip.mp4 --model M -o out.mp4``'s pipeline (H.264
  decode, the data plane, H.264 encode) in this process;
* ``stream``: ``StyleClient.stylize_frames`` to a real ``robust-style serve`` (raw frames
  both ways), frames already decoded: what a webcam loop gets;
* ``file``: ``robust-style stylize clip.mp4 --server ...``'s pipeline through that server.

The clip is the packaged photo under a moving camera; each measurement lasts about
``--seconds`` (at least 8 frames). Medians of ``--rounds``, the CPU model and the load
average are written to ``--out``. The server and this process share the CPU, as they
would on one machine (2 threads each by default).

``chart``: frames/s (``file`` at 640x360) against the judges' style and content distances
(``robust-style evaluate``'s ``scores.csv``), one point per model: docs/img/presets_pareto.png.

    python benchmarks/bench_presets.py speed --out docs/presets_bench.json
    python benchmarks/bench_presets.py speed --models the-scream.onnx fast.onnx ... --out F
    python benchmarks/bench_presets.py chart --speed docs/presets_bench.json \\
        --scores docs/presets_eval/scores.csv --out docs/img/presets_pareto.png
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench_video import frames_for, write_clip
from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "src" / "robust_style" / "models"
SIZES = ((640, 360), (1280, 720))
MODES = ("bare", "local", "stream", "file")


def _random_presets(tmp: Path, names: list[str] | None) -> list[Path]:
    import torch

    from robust_style.contract import StyleMetadata
    from robust_style.export import export_onnx
    from robust_style.transformer_net import TransformerNet
    from robust_style.transformer_net.arch import ARCH_PRESETS

    files = []
    for name in names or list(ARCH_PRESETS):
        torch.manual_seed(0)
        files.append(export_onnx(TransformerNet(ARCH_PRESETS[name]).eval(),
                                 tmp / f"{name}.onnx", StyleMetadata(name=f"random-{name}")))
    return files


def speed(args: argparse.Namespace) -> None:
    from robust_style.netutil import serve_process
    from robust_style.server.client import StyleClient
    from robust_style.server.engines import EngineConfig
    from robust_style.server.engines.onnxruntime_engine import ProviderConfig
    from robust_style.server.local import LocalStylizer
    from robust_style.video import VideoJob, stylize_video

    tmp = Path(tempfile.mkdtemp())
    folder = tmp / "models"
    folder.mkdir()
    files = [Path(m) for m in args.models] if args.models else [
        *_random_presets(tmp, args.presets), MODELS / "the-scream.onnx",
        MODELS / "the-scream-fast.onnx"]
    for f in files:
        (folder / f.name).symlink_to(f.resolve())
    threads = str(args.threads)
    config = EngineConfig(providers=ProviderConfig(intra_op_threads=args.threads))
    cpu = cpu_model()
    print(f"CPU: {cpu}, {args.threads} threads per engine", flush=True)
    clips = {s: frames_for(s, 48) for s in SIZES}
    local = LocalStylizer(folder, config)
    styles = {m.name: m for m in local.registry.styles()}
    runs: dict[str, dict[str, dict[str, list[float]]]] = {}
    counts: dict[tuple[str, tuple[int, int]], int] = {}
    with serve_process(["--models", str(folder), "--intra-op-threads", threads],
                       stdout=subprocess.DEVNULL) as server, \
            StyleClient(server.target, timeout=900) as client:
        served = {s.name: s for s in client.list_styles()}
        for name, model in styles.items():  # warm-up per size; frames per measurement
            for s in SIZES:
                x = clips[s][0][None]
                model.engine.run(x)
                list(client.stylize_frames(iter(clips[s][:2]), name))
                t0 = time.perf_counter()
                model.engine.run(x)
                counts[name, s] = max(8, min(48, round(args.seconds / (time.perf_counter() - t0))))
        for r in range(args.rounds):
            for name, model in styles.items():
                for s in SIZES:
                    key, n = f"{s[0]}x{s[1]}", counts[name, s]
                    fps = runs.setdefault(name, {}).setdefault(key, {m: [] for m in MODES})
                    clip = tmp / f"clip_{name}_{key}.mp4"
                    if not clip.exists():
                        write_clip(clip, clips[s][:n])
                    t0 = time.perf_counter()
                    for frame in clips[s][:n]:
                        model.engine.run(frame[None])
                    fps["bare"].append(n / (time.perf_counter() - t0))
                    res = stylize_video(local, VideoJob(clip, tmp / "local.mp4", name),
                                        progress=False)
                    fps["local"].append(res.frames / res.seconds)
                    t0 = time.perf_counter()
                    got = sum(1 for _ in client.stylize_frames(iter(clips[s][:n]), name))
                    fps["stream"].append(got / (time.perf_counter() - t0))
                    res = stylize_video(client, VideoJob(clip, tmp / "remote.mp4", name),
                                        progress=False)
                    fps["file"].append(res.frames / res.seconds)
                    print(f"round {r + 1} {name} {key}: " + ", ".join(
                        f"{m} {fps[m][-1]:.2f}" for m in MODES) + " frames/s", flush=True)
    local.close()
    rows = []
    for name, model in styles.items():
        row = {"model": name, "file": Path(model.file).name, "arch": model.metadata.arch,
               "engine": f"{model.engine_name} {model.precision}",
               "served_engine": f"{served[name].engine} {served[name].precision}",
               "note": model.engine_note}
        for key, fps in runs[name].items():
            for m in MODES:
                row[f"{m}_fps_{key}"] = round(statistics.median(fps[m]), 2)
            row[f"file_vs_bare_{key}"] = round(row[f"file_fps_{key}"] / row[f"bare_fps_{key}"], 3)
            row[f"local_vs_bare_{key}"] = round(row[f"local_fps_{key}"] / row[f"bare_fps_{key}"],
                                                3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    report = {"cpu": cpu, "threads": args.threads, "rounds": args.rounds,
              "load_average_end": os.getloadavg(), "rows": rows, "all_fps": runs}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


def chart(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = json.loads(args.speed.read_text())
    fps = {r["model"]: r["file_fps_640x360"] for r in report["rows"]}
    per_photo: dict[str, list[dict[str, str]]] = {}
    with args.scores.open() as f:
        for r in csv.DictReader(f):
            per_photo.setdefault(r["model"], []).append(r)
    scores = {m: {j: statistics.mean(float(r[j]) for r in rs)
                  for j in ("style_vgg19", "content_lpips")} for m, rs in per_photo.items()}
    names = [n for n in fps if n in scores]
    if not names:
        raise SystemExit(f"no model is in both {args.speed} and {args.scores}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, judge, label in ((axes[0], "style_vgg19", "style distance (VGG-19 Gram)"),
                             (axes[1], "content_lpips", "content distance (LPIPS)")):
        for n in names:
            ax.scatter(fps[n], scores[n][judge], s=30)
            ax.annotate(n, (fps[n], scores[n][judge]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        ax.axvline(25, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("frames/s, stylize clip.mp4 end to end, 640x360")
        ax.set_ylabel(f"{label}, lower is better")
    load = ", ".join(f"{x:.1f}" for x in report["load_average_end"])
    fig.suptitle(f"presets: speed against the judges; {report['cpu']}, "
                 f"{report['threads']} threads, load {load}", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed", help="bare and end-to-end frames/s per model")
    s.add_argument("--models", nargs="*", help="style .onnx files (default: random presets "
                   "and the bundled styles)")
    s.add_argument("--presets", nargs="*", default=None, help="random presets (default all)")
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--seconds", type=float, default=3.0, help="length of a measurement")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--out", type=Path, default=None)
    c = sub.add_parser("chart", help="Pareto chart from speed JSON and evaluate scores.csv")
    c.add_argument("--speed", type=Path, required=True)
    c.add_argument("--scores", type=Path, required=True)
    c.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "presets_pareto.png")
    args = ap.parse_args()
    {"speed": speed, "chart": chart}[args.what](args)


if __name__ == "__main__":
    main()
