"""The real ``robust-style serve`` inside a memory cgroup, as in a container (issue 22).

Needs root and a cgroup v1 memory controller (``/sys/fs/cgroup/memory``). The server
reads its default memory budget from the cgroup's limit; nothing else is configured.

    sudo python benchmarks/bench_cgroup.py photos --limit 4G      # 12 MP, then 3 x 6 MP at once
    sudo python benchmarks/bench_cgroup.py styles --limit 3G --styles 30   # each at 1024^2

Prints one JSON line: the answers' sizes and seconds, the cgroup's peak usage
(``memory.max_usage_in_bytes``: the server's anonymous memory and the page cache charged
to it), its ``failcnt`` (times the limit was reached and memory reclaimed), the kernel's
OOM kills, and whether the server is still alive.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import numpy as np
from machine import cpu_model
from PIL import Image

from robust_style.netutil import serve_process
from robust_style.server.client import StyleClient
from robust_style.server.images import encode_image
from robust_style.server.memory import parse_size

CGROUP = Path("/sys/fs/cgroup/memory")
BUNDLED = Path(str(resources.files("robust_style") / "models" / "the-scream.onnx"))


def _photo(w: int, h: int) -> bytes:
    import skimage.data

    img = Image.fromarray(skimage.data.coffee()).resize((w, h), Image.BILINEAR)
    return encode_image(np.asarray(img), "jpeg").data


def _catalogue(n: int, folder: Path) -> list[str]:
    """``n`` copies of the bundled style under other names (each its own engine)."""
    import onnx

    names = []
    for i in range(n):
        model = onnx.load(str(BUNDLED))
        for prop in model.metadata_props:
            if prop.key == "robust_style.name":
                prop.value = f"s{i:02d}"
        onnx.save(model, str(folder / f"s{i:02d}.onnx"))
        names.append(f"s{i:02d}")
    return names


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("photos", "styles"))
    ap.add_argument("--limit", default="4G", help="the cgroup's memory limit")
    ap.add_argument("--styles", type=int, default=30)
    ap.add_argument("--side", type=int, default=1024, help="styles: the photo's side")
    args = ap.parse_args()
    if os.geteuid() != 0 or not (CGROUP / "cgroup.procs").exists():
        sys.stderr.write("bench_cgroup: needs root and a cgroup v1 memory controller\n")
        return 2
    group = CGROUP / f"robust-style-bench-{os.getpid()}"
    group.mkdir()
    limit = parse_size(args.limit)
    (group / "memory.limit_in_bytes").write_text(str(limit))
    with contextlib.suppress(OSError):
        (group / "memory.memsw.limit_in_bytes").write_text(str(limit))
    models = Path(tempfile.mkdtemp())
    code = (f"import os; open('{group}/cgroup.procs','w').write(str(os.getpid())); "
            "from robust_style.cli import main; raise SystemExit(main())")
    quiet = os.environ.get("BENCH_VERBOSE") is None
    report: dict[str, object] = {"what": args.what, "limit": limit, "cpu": cpu_model()}
    try:
        if args.what == "photos":
            shutil.copy(BUNDLED, models / BUNDLED.name)
            names = ["the-scream"]
        else:
            names = _catalogue(args.styles, models)
        with serve_process(["--models", str(models), "--poll-seconds", "0"],
                           command=[sys.executable, "-c", code], ready_timeout=900,
                           quiet=quiet) as srv, \
                StyleClient(srv.target, timeout=1800) as client:
            answers = []
            if args.what == "photos":
                big, mid = _photo(4000, 3000), _photo(2828, 2121)
                t = time.monotonic()
                client.stylize(big, "the-scream")
                answers.append({"mp": 12.0, "seconds": time.monotonic() - t})
                t = time.monotonic()
                with ThreadPoolExecutor(3) as pool:
                    list(pool.map(lambda _: client.stylize(mid, "the-scream"), range(3)))
                answers.append({"mp": 6.0, "concurrent": 3, "seconds": time.monotonic() - t})
            else:
                data = _photo(args.side, args.side)
                t = time.monotonic()
                for name in names:
                    client.stylize(data, name)
                answers.append({"styles": len(names), "side": args.side,
                                "seconds": time.monotonic() - t})
            report.update(answers=answers, alive=srv.proc.poll() is None)
        report.update(
            max_usage=int((group / "memory.max_usage_in_bytes").read_text()),
            failcnt=int((group / "memory.failcnt").read_text()),
            oom_kills=next((int(line.split()[1]) for line in
                            (group / "memory.oom_control").read_text().splitlines()
                            if line.startswith("oom_kill ")), None))
    finally:
        shutil.rmtree(models, ignore_errors=True)
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.2)
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
