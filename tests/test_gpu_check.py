"""``scripts/gpu_check.sh`` on a machine without a GPU: exit 2 and one line, nothing installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _has_gpu() -> bool:
    if not shutil.which("nvidia-smi"):
        return False
    p = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return p.returncode == 0 and "GPU " in p.stdout


@pytest.mark.skipif(_has_gpu(), reason="a GPU is present: run scripts/gpu_check.sh itself")
@pytest.mark.parametrize("cmd", [["bash", "scripts/gpu_check.sh"],
                                 [sys.executable, "scripts/gpu_check.py"]])
def test_without_a_gpu_exits_2_with_one_line(cmd: list[str]) -> None:
    had_venv = (REPO / ".venv").exists()
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    out = (p.stdout + p.stderr).strip().splitlines()
    assert p.returncode == 2, p.stdout + p.stderr
    assert len(out) == 1 and "no CUDA GPU" in out[0], out
    assert (REPO / ".venv").exists() == had_venv  # exits before installing anything
