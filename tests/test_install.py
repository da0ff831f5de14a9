"""The base install is torch-free; commands of a missing extra say which extra, in one line.

The first tests hide the train extra's packages from a real ``robust-style`` process (an
import hook that raises ``ModuleNotFoundError`` for them, as a venv without them would);
the slow test builds a real fresh venv with the base install from this checkout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from robust_style.cli import EXTRA_OF_MODULE
from robust_style.netutil import free_port

REPO = Path(__file__).resolve().parents[1]
TRAIN_ONLY = sorted(m for m, extra in EXTRA_OF_MODULE.items() if extra != "plots")

HIDE = r"""
import importlib.abc, sys
hidden = set(sys.argv[1].split(","))
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Hide())
from robust_style.cli import main
try:
    code = main(sys.argv[2:])
finally:
    print("LEAKED", sorted({m.split(".")[0] for m in sys.modules} & hidden))
sys.exit(code)
"""


def run_without(modules: list[str], *args: str, cwd: Path | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", HIDE, ",".join(modules), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def test_help_of_every_command_works_without_the_train_extra() -> None:
    proc = run_without(TRAIN_ONLY, "--help")
    assert proc.returncode == 0, proc.stderr
    commands = [c for c in ("serve", "styles", "stylize", "demo", "train", "export", "weights",
                            "analyze", "optimize", "backbone", "evaluate", "tune")
                if f"    {c} " in proc.stdout]
    assert len(commands) == 12, proc.stdout
    for command in commands:
        proc = run_without(TRAIN_ONLY, command, "--help")
        assert proc.returncode == 0, (command, proc.stderr)
        assert "LEAKED []" in proc.stdout


@pytest.mark.parametrize("argv", [
    ["train", "--style", "x.jpg", "--content", "photos", "--out", "run"],
    ["export", "run", "-o", "x.onnx"],
    ["weights", "list"],
    ["evaluate", "x.onnx", "--photos", ".", "--artwork", "x.jpg"],
    ["tune", "--backbone", "alexnet", "--style", "x.jpg", "--content", ".", "--photos", ".",
     "--out", "t"],
    ["optimize", "--style", "x.jpg", "--content", "y.jpg", "-o", "out.png", "--backbone", "vgg16"],
])
def test_a_command_of_a_missing_extra_exits_2_naming_it(argv: list[str], tmp_path: Path) -> None:
    proc = run_without(TRAIN_ONLY, *argv, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"robust-style {argv[0]}" in lines[0]
    assert "pip install 'robust-style[train]'" in lines[0], lines[0]


def test_demo_runs_without_the_train_extra(tmp_path: Path) -> None:
    """The README's first command on the base install: no torch or lpips."""
    proc = run_without(TRAIN_ONLY, "demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LEAKED []" in proc.stdout
    assert (tmp_path / "robust-style-demo" / "sample_the-scream.png").stat().st_size > 10_000


def _du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


@pytest.mark.slow
def test_fresh_base_install_serves_without_torch(tmp_path: Path) -> None:
    """A fresh venv, ``pip install <checkout>`` with no extra: no torch; serve and stylise."""
    src = tmp_path / "checkout"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", "build", "robust-style-demo", ".ruff_cache",
        ".pytest_cache"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    start = time.monotonic()
    pip = subprocess.run([str(py), "-m", "pip", "install", "--quiet", str(src)],
                         capture_output=True, text=True, timeout=1800)
    if pip.returncode != 0 and ("Could not find a version" in pip.stderr
                                or "NewConnectionError" in pip.stderr):
        pytest.skip(f"no package index reachable: {pip.stderr.strip().splitlines()[-1]}")
    assert pip.returncode == 0, pip.stderr[-3000:]
    print(f"base install: {time.monotonic() - start:.0f} s, venv {_du(venv) / 1e9:.2f} GB")
    for module in ("torch", "torchvision", "onnxscript"):  # onnx is base: the tiler uses it
        probe = subprocess.run([str(py), "-c", f"import {module}"], capture_output=True, text=True)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module

    photo = tmp_path / "photo.jpg"
    shutil.copy(REPO / "src" / "robust_style" / "models" / "sample.jpg", photo)
    port = free_port()
    exe = venv / "bin" / "robust-style"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    http_port = free_port()
    server = subprocess.Popen([str(exe), "serve", "--port", str(port), "--metrics-port", "-1",
                               "--http-port", str(http_port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env, cwd=tmp_path)
    bundled = {"the-scream", "the-scream-fast"}
    try:
        styles = None
        for _ in range(120):
            styles = subprocess.run([str(exe), "styles", "--server", f"127.0.0.1:{port}"],
                                    capture_output=True, text=True, env=env, cwd=tmp_path)
            if styles.returncode == 0 and bundled <= set(re.findall(r"[\w-]+", styles.stdout)):
                break
            time.sleep(1)
        assert styles is not None and bundled <= set(re.findall(r"[\w-]+", styles.stdout)), styles
        out = tmp_path / "out"
        for name in sorted(bundled):
            proc = subprocess.run([str(exe), "stylize", str(photo), "--server",
                                   f"127.0.0.1:{port}", "--style", name, "-o", str(out)],
                                  capture_output=True, text=True, env=env, cwd=tmp_path,
                                  timeout=300)
            assert proc.returncode == 0, proc.stderr
            assert (out / f"photo_{name}.png").stat().st_size > 10_000
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v1/styles", timeout=30) as r:
            assert bundled <= {st["name"] for st in json.load(r)["styles"]}  # the HTTP door too
    finally:
        server.terminate()
        log = server.communicate(timeout=60)[0]
    assert server.returncode == 0, log[-3000:]
    assert "Traceback" not in log
