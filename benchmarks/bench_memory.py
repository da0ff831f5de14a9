"""Peak RSS and seconds per megapixel, tiled and untiled, under a memory budget (issue 22).

Each measurement runs in a fresh process (peak RSS is per process): the bundled style on
the chosen engine, one photo of N megapixels, through :class:`BudgetedEngine` with a
budget (``--budget``, default 2G) and, where it fits, untiled (no budget). Also RSS against
the number of styles used (copies of the bundled style, each asked once at 1024^2).

    python benchmarks/bench_memory.py --mp 1 4 12 40 100 --budget 2G --out benchmarks/results/memory.json
    python benchmarks/bench_memory.py --styles 1 5 10 30 --budget 3G
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

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
local = LocalStylizer(d, engine=EngineConfig(engine=engine, precision="fp32"),
                      memory_budget=parse_size(budget))
x = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8).repeat(16, 0).repeat(16, 1)
for s in local.list_styles():
    local.plane.finish(local.plane.submit_pixels(x, s.name, __import__("robust_style.server.dataplane", fromlist=["x"]).ImageOptions(), "local"), encode=False)
print(json.dumps({"styles": n, "rss": rss(), "peak_rss": peak_rss(),
                  "evictions": local.registry.memory.evictions, "budget": parse_size(budget)}))
local.close(); shutil.rmtree(d)
"""


def _child(code: str, *args: str) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=7200)
    if proc.returncode != 0:
        return {"args": list(args), "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mp", type=float, nargs="*", default=[1, 4])
    p.add_argument("--untiled-max-mp", type=float, default=12,
                   help="largest size also run untiled (it needs ~500 B/px)")
    p.add_argument("--styles", type=int, nargs="*", default=[])
    p.add_argument("--budget", default="2G")
    p.add_argument("--engine", default="openvino", choices=["openvino", "onnxruntime"])
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    rows: list[dict[str, object]] = []
    for mp in args.mp:
        modes = ["tiled"] + (["untiled"] if mp <= args.untiled_max_mp else [])
        for mode in modes:
            t = time.monotonic()
            row = _child(CHILD, str(mp), args.budget, args.engine, mode)
            log.info("%s MP %s: %s (%.0f s)", mp, mode, row, time.monotonic() - t)
            rows.append(row)
    for n in args.styles:
        row = _child(STYLES, str(n), args.budget, args.engine)
        log.info("%d styles: %s", n, row)
        rows.append(row)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
