"""Run Triton's ``perf_analyzer`` (PyPI ``perf-analyzer``) against a KServe server.

One place that finds the binary and the libraries it links, runs it and parses its CSV
report; used by ``tests/test_perf_analyzer.py`` and ``benchmarks/bench_perf_analyzer.py``.

The PyPI binary links ``libcudart.so.12`` even on a CPU-only machine (from the PyPI
package ``nvidia-cuda-runtime-cu12``, found here from the installed package) and
``libb64.so.0d`` (Debian ``libb64-0d``; ``scripts/setup.sh dev`` installs it as root).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PerfAnalyzer", "find_perf_analyzer", "parse_csv"]


@dataclass(frozen=True)
class PerfAnalyzer:
    binary: Path
    env: dict[str, str]

    def run(self, args: list[str], csv_path: Path, timeout: float = 600
            ) -> tuple[subprocess.CompletedProcess[str], list[dict[str, float]]]:
        """Run with ``args`` (plus ``-f csv_path``); the process and the parsed CSV rows."""
        proc = subprocess.run([str(self.binary), *args, "-f", str(csv_path)],
                              capture_output=True, text=True, env=self.env, timeout=timeout)
        rows = parse_csv(csv_path.read_text()) if csv_path.is_file() else []
        return proc, rows


def _cudart_dir() -> Path | None:
    try:
        import nvidia.cuda_runtime as cr  # the PyPI package nvidia-cuda-runtime-cu12
    except ImportError:
        return None
    for root in getattr(cr, "__path__", []):
        lib = Path(root) / "lib"
        if (lib / "libcudart.so.12").is_file():
            return lib
    return None


def find_perf_analyzer() -> PerfAnalyzer | str:
    """The runnable tool, or the reason it cannot run here (one line)."""
    found = shutil.which("perf_analyzer") or str(Path(sys.executable).parent / "perf_analyzer")
    binary = Path(found)
    if not binary.is_file():
        return "perf_analyzer is not installed (pip install 'robust-style[dev]')"
    env = dict(os.environ)
    cudart = _cudart_dir()
    if cudart is None:
        return ("libcudart.so.12 not found: perf_analyzer links it even on a CPU; "
                "pip install nvidia-cuda-runtime-cu12 (in the dev extra)")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(cudart),
                                                         env.get("LD_LIBRARY_PATH")) if p)
    try:
        ldd = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot inspect perf_analyzer's libraries with ldd: {exc}"
    missing = [line.split()[0] for line in ldd.splitlines() if "not found" in line]
    if any(m.startswith("libb64") for m in missing):
        return ("libb64.so.0d not found: perf_analyzer links it; install Debian's libb64-0d "
                "(scripts/setup.sh dev does as root: apt-get install libb64-0d)")
    if missing:
        return f"perf_analyzer needs libraries this machine lacks: {', '.join(missing)}"
    return PerfAnalyzer(binary, env)


def parse_csv(text: str) -> list[dict[str, float]]:
    """perf_analyzer's ``-f`` report: one row per concurrency (sorted by concurrency;
    perf_analyzer sorts them by throughput), numbers by column name.

    Columns include ``Concurrency``, ``Inferences/Second``, ``p50 latency`` ... ``p99
    latency`` (microseconds) and the server-side ``Server Queue``, ``Server Compute
    Input/Infer/Output`` (microseconds per request, from the server's statistics).
    """
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        parsed: dict[str, float] = {}
        for key, value in row.items():
            if key is None or value in (None, ""):
                continue
            try:
                parsed[key.strip()] = float(value)
            except ValueError:
                continue
        if "Concurrency" in parsed:
            rows.append(parsed)
    return sorted(rows, key=lambda r: r["Concurrency"])
