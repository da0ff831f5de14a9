"""Video benchmark: frames/s through the gRPC stream at 640x360 and 1280x720.

Starts ``robust-style serve`` (the default engine and providers: on a GPU machine that is
TensorRT/CUDA, here ONNX Runtime on the CPU) with the bundled style or ``--model``, then per
resolution, interleaved over ``--repeats`` rounds:

* ``stream``: ``StyleClient.stylize_frames`` over one ``StylizeStream`` (PNG both ways),
  frames already decoded: what a webcam loop gets;
* ``file``: ``robust-style stylize clip.mp4 -o out.mp4``'s pipeline (H.264 decode, the
  stream, H.264 encode, audio copy) on a clip of the same frames.

Frames come from a real photo under a moving camera. Prints medians, the CPU model, the
load average and the server's providers; saves ``video_bench.json`` and ``.png`` in
``--out``.

    python benchmarks/bench_video.py --frames 12 --repeats 3 --out docs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
SIZES = ((640, 360), (1280, 720))


def gpu_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().replace("\n", ", ") if out.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def frames_for(size: tuple[int, int], n: int) -> list:
    import numpy as np
    from PIL import Image

    from robust_style.video.warping import synthetic_clip

    photo = Image.open(REPO / "src" / "robust_style" / "models" / "sample.jpg").convert("RGB")
    return list(synthetic_clip(np.asarray(photo), n, size, "affine").frames)


def write_clip(path: Path, frames: list, fps: int = 25) -> Path:
    import av

    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=Fraction(fps), options={"crf": "18"})
        v.height, v.width = frames[0].shape[:2]
        v.pix_fmt = "yuv420p"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for p in v.encode(vf):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="style .onnx (default: the bundled style)")
    ap.add_argument("--frames", type=int, default=12, help="frames per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--serve-args", default="", help="extra `robust-style serve` options")
    args = ap.parse_args()

    from robust_style.netutil import serve_process  # the one helper (tests use it too)
    from robust_style.server.client import StyleClient
    from robust_style.video import VideoJob, stylize_video

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cmd = args.serve_args.split()
        if args.model:
            models = tmp / "models"
            models.mkdir()
            (models / Path(args.model).name).symlink_to(Path(args.model).resolve())
            cmd += ["--models", str(models)]
        with serve_process(cmd, quiet=False, stdout=subprocess.DEVNULL) as server, \
                StyleClient(server.target, timeout=600) as client:
            style = client.list_styles()[0]
            clips = {s: frames_for(s, args.frames) for s in SIZES}
            files = {s: write_clip(tmp / f"clip_{s[0]}x{s[1]}.mp4", clips[s]) for s in SIZES}
            for s in SIZES:  # warm-up per size (engines may build per shape)
                list(client.stylize_frames(iter(clips[s][:2]), style.name))
            results: dict[str, dict[str, list[float]]] = {
                f"{w}x{h}": {"stream": [], "file": []} for w, h in SIZES}
            for r in range(args.repeats):
                for s in SIZES:
                    key = f"{s[0]}x{s[1]}"
                    t0 = time.perf_counter()
                    n = sum(1 for _ in client.stylize_frames(iter(clips[s]), style.name))
                    results[key]["stream"].append(n / (time.perf_counter() - t0))
                    out = tmp / f"out_{key}_{r}.mp4"
                    t0 = time.perf_counter()
                    res = stylize_video(client, VideoJob(files[s], out, style.name),
                                        progress=False)
                    results[key]["file"].append(res.frames / (time.perf_counter() - t0))
                    print(f"round {r + 1}: {key} stream {results[key]['stream'][-1]:.2f} "
                          f"file {results[key]['file'][-1]:.2f} frames/s", flush=True)
    report = {
        "cpu": cpu_model(), "gpu": gpu_name(), "providers": list(style.providers),
        "engine": style.engine, "precision": style.precision, "engine_note": style.engine_note,
        "load_average_end": os.getloadavg(), "frames": args.frames, "repeats": args.repeats,
        "style": style.name,
        "median_fps": {k: {m: statistics.median(v) for m, v in d.items()}
                       for k, d in results.items()},
        "all_fps": results,
    }
    print(json.dumps({k: report[k] for k in ("cpu", "gpu", "providers", "engine", "precision",
                                             "load_average_end", "median_fps")}, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "video_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    _chart(report, args.out / "video_bench.png")
    return 0


def _chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(report["median_fps"])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for i, mode in enumerate(("stream", "file")):
        vals = [report["median_fps"][k][mode] for k in keys]
        ax.bar([j + i * 0.38 for j in range(len(keys))], vals, width=0.36, label=mode)
    ax.set_xticks([j + 0.19 for j in range(len(keys))], keys)
    ax.set_ylabel("frames/s (median)")
    where = report["gpu"] or report["cpu"]
    load = ", ".join(f"{x:.1f}" for x in report["load_average_end"])
    ax.set_title(f"gRPC video, {report['engine']} {report['precision']}\n"
                 f"{where[:60]}, load average {load}", fontsize=8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
