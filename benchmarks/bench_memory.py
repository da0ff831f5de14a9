"""Peak RSS and seconds per megapixel, tiled and untiled, under a memory budget (issue 22).

Each measurement runs in a fresh process (peak RSS is per process): the bundled style on
the chosen engine, one photo of N megapixels, through :class:`BudgetedEngine` with a
budget (``--budget``, default 2G) and, where it fits, untiled (no budget). Also RSS against
the number of styles used (copies of the bundled style, each asked once at 1024^2).

    python benchmarks/bench_memory.py --mp 1 4 12 40 100 --budget 2G --out benchmarks/results/memory.json
    python benchmarks/bench_memory.py --styles 30 --budget 3G --unbounded-styles 12
    python benchmarks/bench_memory.py --chart docs/img/memory.png --from benchmarks/results/memory.json

``--rounds R`` repeats every (size, mode) R times, interleaved, and the chart and the
ratio use medians (timings on a shared machine are noisy). A styles run records the RSS
after each style's first answer, so one run with 30 styles is the whole curve;
``--unbounded-styles N`` runs the same without a budget (each style keeps its compiled
engine) for comparison.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from machine import cpu_model

log = logging.getLogger("bench_memory")

CHILD = r"""
import json, sys, time, numpy as np
from importlib import resources
from robust_style.server.engines import EngineConfig, EngineSelector
from robust_style.server.memory import MemoryBudget, parse_size, peak_rss, reset_peak, rss
from robust_style.server.registry.style_model import load_style
mp, budget, engine, mode = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
data = (resources.files("robust_style") / "models" / "the-scream.onnx").read_bytes()
b = MemoryBudget(parse_size(budget) if mode == "tiled" else 1 << 45)
m = load_style(data, EngineSelector(EngineConfig(engine=engine, precision="fp32")), budget=b)
h = int((mp * 1e6 * 3 / 4) ** 0.5); w = int(h * 4 / 3)
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (1, h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
x = np.ascontiguousarray(x.repeat(16, 1).repeat(16, 2)[:, :h, :w])
plan = m.engine.plan(1, h, w)
import threading
peaks, done = {"RssAnon": 0, "RssFile": 0}, threading.Event()
def sample():  # peak anonymous and file-backed RSS (VmHWM counts both)
    while not done.wait(0.02):
        for line in open("/proc/self/status"):
            k = line.split(":")[0]
            if k in peaks:
                peaks[k] = max(peaks[k], int(line.split()[1]) * 1024)
threading.Thread(target=sample, daemon=True).start()
reset_peak()
t = time.perf_counter(); m.engine.run(x); dt = time.perf_counter() - t
done.set()
print(json.dumps({"mp": h * w / 1e6, "mode": mode, "tiled": plan.tiled, "tile": plan.tile,
                  "whole_group": list(plan.group) if plan.group else None,
                  "seconds": dt, "s_per_mp": dt / (h * w / 1e6), "peak_rss": peak_rss(),
                  "peak_anon": peaks["RssAnon"], "peak_file": peaks["RssFile"],
                  "budget": b.total if mode == "tiled" else 0}))
"""

STYLES = r"""
import json, sys, shutil, tempfile, numpy as np
from pathlib import Path
from importlib import resources
from robust_style.server.memory import parse_size, peak_rss, rss
from robust_style.server.local import LocalStylizer
from robust_style.server.engines import EngineConfig
n, budget, engine = int(sys.argv[1]), sys.argv[2], sys.argv[3]
src = Path(str(resources.files("robust_style") / "models" / "the-scream.onnx"))
d = Path(tempfile.mkdtemp())
import onnx
for i in range(n):
    m = onnx.load(str(src))
    for p in m.metadata_props:
        if p.key == "robust_style.name":
            p.value = f"s{i:02d}"
    onnx.save(m, str(d / f"s{i:02d}.onnx"))
from robust_style.server.dataplane import ImageOptions
total = parse_size(budget) if budget != "none" else 1 << 45
local = LocalStylizer(d, engine=EngineConfig(engine=engine, precision="fp32"),
                      memory_budget=total)
x = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8).repeat(16, 0).repeat(16, 1)
curve = []  # RSS after each style's first answer
for s in local.list_styles():
    local.plane.finish(local.plane.submit_pixels(x, s.name, ImageOptions(), "local"), encode=False)
    curve.append(rss())
print(json.dumps({"styles": n, "rss": rss(), "peak_rss": peak_rss(), "rss_curve": curve,
                  "evictions": local.registry.memory.evictions,
                  "budget": total if budget != "none" else 0}))
local.close(); shutil.rmtree(d)
"""


def _child(code: str, *args: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=7200)
    if proc.returncode != 0:
        return {"args": list(args), "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def chart(rows: list[dict[str, Any]], out: Path) -> None:
    """Peak RSS and s/MP against megapixels (tiled, untiled), and RSS against styles used."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gib = float(1 << 30)
    with_styles = any("rss_curve" in r for r in rows)
    fig, axes = plt.subplots(1, 3 if with_styles else 2, figsize=(15 if with_styles else 10, 4.4))
    a_rss, a_time = axes[0], axes[1]
    for mode, marker in (("tiled", "o"), ("untiled", "s")):
        by_mp: dict[float, list[dict[str, object]]] = {}
        for r in rows:
            if r.get("mode") == mode and "error" not in r:
                by_mp.setdefault(round(float(r["mp"]), 1), []).append(r)
        xs = sorted(by_mp)
        if not xs:
            continue
        a_rss.plot(xs, [statistics.median(float(r["peak_rss"]) for r in by_mp[m]) / gib
                        for m in xs], marker=marker, label=mode)
        a_time.plot(xs, [statistics.median(float(r["s_per_mp"]) for r in by_mp[m])
                         for m in xs], marker=marker, label=mode)
    budgets = {float(r["budget"]) for r in rows if r.get("mode") == "tiled"}
    for b in budgets:
        a_rss.axhline(b / gib, color="grey", ls="--", lw=1, label=f"budget {b / gib:.1f} GiB")
    for a in (a_rss, a_time):
        a.set_xscale("log")
        a.set_xlabel("photo size (MP)")
        a.legend()
    a_rss.set_ylabel("peak RSS (GiB)")
    a_rss.set_title("memory per photo size")
    a_time.set_ylabel("seconds per MP")
    a_time.set_title("time per MP")
    if with_styles:
        _styles_panel(axes[2], rows)
    fig.suptitle(f"bundled style, OpenVINO fp32, {cpu_model()}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    log.info("chart: %s", out)


def _styles_panel(a_styles: Any, rows: list[dict[str, Any]]) -> None:
    gib = float(1 << 30)
    for r in rows:
        if "rss_curve" not in r:
            continue
        curve = [float(v) / gib for v in r["rss_curve"]]
        b = float(r["budget"])
        label = f"budget {b / gib:.1f} GiB" if b else "no budget"
        line = a_styles.plot(range(1, len(curve) + 1), curve, marker=".", label=label)
        if b:
            a_styles.axhline(b / gib, color=line[0].get_color(), ls="--", lw=1)
    a_styles.xaxis.get_major_locator().set_params(integer=True)
    a_styles.set_xlabel("styles used (each once at 1024²)")
    a_styles.set_ylabel("RSS (GiB)")
    a_styles.set_title("memory per number of styles")
    a_styles.legend()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mp", type=float, nargs="*", default=[])
    p.add_argument("--untiled-max-mp", type=float, default=12,
                   help="largest size also run untiled (it needs ~500 B/px)")
    p.add_argument("--rounds", type=int, default=1, help="repeats per size and mode, interleaved")
    p.add_argument("--styles", type=int, nargs="*", default=[])
    p.add_argument("--unbounded-styles", type=int, default=0,
                   help="also use this many styles with no budget (RSS grows per style)")
    p.add_argument("--budget", default="2G")
    p.add_argument("--engine", default="openvino", choices=["openvino", "onnxruntime"])
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--from", dest="from_", type=Path, default=None,
                   help="rows of an earlier run (JSON) to add to the chart")
    p.add_argument("--chart", type=Path, default=None, help="draw the chart to this PNG")
    args = p.parse_args()
    log.info("CPU: %s", cpu_model())
    rows: list[dict[str, Any]] = json.loads(args.from_.read_text()) if args.from_ else []
    earlier = len(rows)
    for _ in range(args.rounds):
        for mp in args.mp:
            modes = ["tiled"] + (["untiled"] if mp <= args.untiled_max_mp else [])
            for mode in modes:
                t = time.monotonic()
                row = _child(CHILD, str(mp), args.budget, args.engine, mode)
                log.info("%s MP %s: %s (%.0f s)", mp, mode, row, time.monotonic() - t)
                rows.append(row)
    def s_per_mp(mp: float, mode: str) -> list[float]:
        return [float(r["s_per_mp"]) for r in rows
                if r.get("mode") == mode and round(float(r.get("mp", 0)), 1) == round(mp, 1)]

    for mp in args.mp:
        tiled, untiled = s_per_mp(mp, "tiled"), s_per_mp(mp, "untiled")
        if tiled and untiled:
            log.info("%s MP: tiled/untiled s/MP (medians of %d, %d) = %.3f", mp, len(tiled),
                     len(untiled), statistics.median(tiled) / statistics.median(untiled))
    runs = [(n, args.budget) for n in args.styles]
    if args.unbounded_styles:
        runs.append((args.unbounded_styles, "none"))
    for n, budget in runs:
        row = _child(STYLES, str(n), budget, args.engine)
        log.info("%d styles, budget %s: %s", n, budget, {k: v for k, v in row.items() if k != "rss_curve"})
        rows.append(row)
    for r in rows[earlier:]:
        r["cpu"] = cpu_model()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    if args.chart:
        chart(rows, args.chart)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
