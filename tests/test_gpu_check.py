"""``scripts/gpu_check.sh`` on a machine without a GPU: exit 2 and one line, nothing installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
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
                                 ["bash", "scripts/gpu_check.sh", "--device-mode"],
                                 [sys.executable, "scripts/gpu_check.py"]])
def test_without_a_gpu_exits_2_with_one_line(cmd: list[str]) -> None:
    had_venv = (REPO / ".venv").exists()
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    out = (p.stdout + p.stderr).strip().splitlines()
    assert p.returncode == 2, p.stdout + p.stderr
    assert len(out) == 1 and "no CUDA GPU" in out[0], out
    assert (REPO / ".venv").exists() == had_venv  # exits before installing anything


# --- device mode (scripts/gpu_device.py, issue 25 part 1) -------------------------------------
sys.path.insert(0, str(REPO / "scripts"))
import gpu_device  # noqa: E402 - scripts/, through sys.path
import gpu_device_measure  # noqa: E402 - scripts/, through sys.path

DEV = [sys.executable, "scripts/gpu_device.py"]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(DEV + args, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})


def test_device_mode_help_lists_its_steps() -> None:
    p = _run(["--help"])
    assert p.returncode == 0
    for step in ("prepare", "split", "piece", "measure"):
        assert step in p.stdout
    p = _run(["measure", "--help"])
    assert p.returncode == 0 and "--torch-only" in p.stdout and "--budget-s" in p.stdout


@pytest.mark.parametrize("args", [["bogus"], ["piece"], ["piece", "one"],
                                  ["measure", "--budget-s", "x"], []])
def test_device_mode_bad_arguments_exit_2_with_one_error_line(args: list[str]) -> None:
    p = _run(args)
    assert p.returncode == 2
    err = [ln for ln in p.stderr.splitlines() if "error:" in ln]
    assert len(err) == 1 and p.stdout == ""


@pytest.mark.skipif(_has_gpu(), reason="a GPU is present")
def test_device_measure_without_a_gpu_refuses_and_installs_nothing() -> None:
    site = REPO / "gpu-check/device/site"
    had = site.exists()
    p = _run(["measure"])
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU" in lines[0]
    assert site.exists() == had


def _split(tmp_path: Path, size: int = 1_000_003, piece: int = 300_000) -> tuple[Path, dict]:
    whole = tmp_path / "big.whl"
    whole.write_bytes(os.urandom(size))
    m = gpu_device.split(whole, tmp_path / "carry", piece)
    return whole, m


def test_split_pieces_reassemble_to_the_same_sha256(tmp_path: Path) -> None:
    whole, m = _split(tmp_path)
    assert [p["size"] for p in m["pieces"]] == [300_000, 300_000, 300_000, 100_003]
    store = tmp_path / "store"
    for k in range(1, 5):  # one call per piece
        line = gpu_device.store_piece(k, tmp_path / "carry", store)
        assert f"piece {k}/4 ok" in line and f"{k} of 4 stored" in line
    out = gpu_device.reassemble(store, tmp_path / "wheel")
    assert out.read_bytes() == whole.read_bytes()
    assert gpu_device.sha256(out) == m["sha256"]


def test_a_corrupt_piece_is_refused_by_name(tmp_path: Path) -> None:
    _, m = _split(tmp_path)
    store = tmp_path / "store"
    for k in range(1, 5):
        gpu_device.store_piece(k, tmp_path / "carry", store)
    bad = store / m["pieces"][2]["file"]
    data = bytearray(bad.read_bytes())
    data[1000] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(gpu_device.Refused, match=r"piece 3/4 .*part03 sha256 mismatch"):
        gpu_device.reassemble(store, tmp_path / "wheel")
    assert not (tmp_path / "wheel" / "big.whl").exists()
    # a corrupt carried piece is refused on arrival, through the CLI: exit 2, one line
    carried = tmp_path / "carry" / m["pieces"][1]["file"]
    carried.write_bytes(carried.read_bytes()[:-1])
    p = _run(["piece", "2", "--carried", str(tmp_path / "carry"), "--store", str(store)])
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "piece 2/4" in lines[0] and "part02" in lines[0]


def test_a_missing_piece_is_refused_by_name(tmp_path: Path) -> None:
    _split(tmp_path)
    store = tmp_path / "store"
    for k in (1, 2, 4):
        gpu_device.store_piece(k, tmp_path / "carry", store)
    with pytest.raises(gpu_device.Refused, match=r"piece 3/4 .* missing; run `piece 3`"):
        gpu_device.reassemble(store, tmp_path / "wheel")


def test_prepare_size_check(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    (small / "a.whl").write_bytes(b"x" * 1000)
    total, ok = gpu_device.fits([small], 17 << 20)
    assert ok and total == (17 << 20) + 1000
    assert gpu_device.fits([small], (64 << 20) - 999) == ((64 << 20) + 1, False)
    big = tmp_path / "big"
    big.mkdir()
    with (big / "b.whl").open("wb") as f:  # sparse: 60 MiB + the checkout > 64 MiB
        f.truncate(60 << 20)
    p = _run(["prepare", "--no-download", "--wheelhouse", str(big)])
    assert p.returncode == 1 and "does NOT fit" in p.stdout and "60.00 MiB" in p.stdout
    p = _run(["prepare", "--no-download", "--wheelhouse", str(small)])
    assert p.returncode == 0 and "fits" in p.stdout
    assert gpu_device.checkout_bytes() > (1 << 20)


def test_device_report_on_synthetic_results(tmp_path: Path) -> None:
    results = {"date": "2026-12-03 17:00 UTC", "notes": ["onnxruntime-gpu not assembled"],
               "sections": {
                   "ceilings": {"status": "ok", "seconds": 4.0, "figures": {
                       "copy_GBps_read_plus_write": 3900.5, "gpu": "NVIDIA H200"}},
                   "ort_infer": {"status": "ok", "seconds": 30.0, "figures": {
                       "1024x1024_b1": {"cuda_fp32_iobinding": {"ms": 4.2, "img_per_s": 238.1},
                                        "cuda_fp32_cudagraph": {"error": "RuntimeError: x"}}}},
                   "train": {"status": "timeout", "reason": "over 144 s", "seconds": 144.0}}}
    gpu_device_measure.write_report(results, tmp_path)
    assert json.loads((tmp_path / "report.json").read_text()) == results
    md = (tmp_path / "report.md").read_text()
    assert "# GPU device check, 2026-12-03 17:00 UTC" in md
    assert "- onnxruntime-gpu not assembled" in md and "TensorRT: absent" in md
    assert "- copy_GBps_read_plus_write: 3900.5" in md
    assert "| 1024x1024_b1 | cuda_fp32_iobinding | ms 4.2, img_per_s 238.1 |" in md
    assert "| 1024x1024_b1 | cuda_fp32_cudagraph | error RuntimeError: x |" in md
    assert "## train: timeout (144 s)" in md and "over 144 s" in md


def test_device_measure_rejects_an_unknown_section() -> None:
    p = subprocess.run([sys.executable, "scripts/gpu_device_measure.py", "--only", "nope"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "unknown section 'nope'" in p.stderr


@pytest.mark.skipif(_has_gpu(), reason="a GPU is present")
def test_device_measure_sections_run_in_subprocesses_and_report_failures(tmp_path: Path) -> None:
    """The driver's plumbing on a CPU: the section fails (no CUDA), the run goes on, the
    report records the reason."""
    p = subprocess.run([sys.executable, "scripts/gpu_device_measure.py", "--only", "ceilings",
                        "--out", str(tmp_path), "--note", "cpu smoke"], cwd=REPO,
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert p.returncode == 0, p.stderr
    assert "ceilings: failed" in p.stdout
    rep = json.loads((tmp_path / "report.json").read_text())
    sec = rep["sections"]["ceilings"]
    assert sec["status"] == "failed" and sec["reason"]
    assert rep["notes"] == ["cpu smoke"]
    assert "## ceilings: failed" in (tmp_path / "report.md").read_text()


def test_prepare_builds_an_fp16_style_model_that_serves_uint8(tmp_path: Path) -> None:
    """The carried fp16 file (the machine cannot convert: no onnxconverter-common)."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    dest = tmp_path / gpu_device.FP16_MODEL
    gpu_device.build_fp16_model(dest)
    m = onnx.load(str(dest))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer)
    x = np.random.default_rng(0).integers(0, 256, (2, 64, 96, 3), dtype=np.uint8)
    y = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"]).run(
        None, {"image": x})[0]
    assert y.shape == x.shape and y.dtype == np.uint8


def test_a_section_cut_by_its_timeout_keeps_its_figures_so_far() -> None:
    t0 = time.monotonic()
    res = gpu_device_measure.run_section("selftest", 5)
    assert time.monotonic() - t0 < 60
    assert res["status"] == "timeout (partial)" and res["reason"] == "over 5 s"
    assert res["figures"] == {"first": {"done": 1}}
