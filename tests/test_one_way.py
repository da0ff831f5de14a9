"""One way to do each small thing: the shared helpers, and a scan that no copy comes back."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import skimage_photo

from robust_style.contract import MAX_PIXELS, parse_dims
from robust_style.errors import first_line
from robust_style.pixels import psnr

SRC = Path(__file__).resolve().parents[1] / "src" / "robust_style"
ROOT = SRC.parents[1]


def _python_files(*folders: str) -> list[Path]:
    return [p for f in folders for p in (ROOT / f).rglob("*.py")]


def test_parse_dims() -> None:
    assert parse_dims("720x1280", 2) == (720, 1280)
    assert parse_dims(" 1X3x37x53 ") == (1, 3, 37, 53)
    for bad in ("720", "720x", "ax2", "0x5", "-1x5", ""):
        with pytest.raises(ValueError):
            parse_dims(bad, 2)
    with pytest.raises(ValueError, match="NxN"):
        parse_dims("1x2x3", 2)


def test_psnr_follows_its_definition() -> None:
    photo = skimage_photo("astronaut")[::4, ::4]
    assert psnr(photo, photo) == math.inf
    brighter = np.clip(photo.astype(int) + 1, 0, 255).astype(np.uint8)
    mse = np.mean((photo.astype(float) - brighter) ** 2)
    assert psnr(photo, brighter) == pytest.approx(10 * math.log10(255**2 / mse))
    a = photo.astype(np.float64) / 255
    assert psnr(a, a * 0.5, peak=1.0) == pytest.approx(10 * math.log10(1 / np.mean((a * 0.5) ** 2)))
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(photo, photo[1:])


def test_first_line_of_an_empty_message_is_the_type() -> None:
    assert first_line(RuntimeError("")) == "RuntimeError"
    assert first_line(ValueError("\n  \nsecond\nthird")) == "second"
    assert first_line("", 10) == ""
    assert first_line("x" * 500, 120) == "x" * 120


def test_no_copies_of_the_small_helpers() -> None:
    """No PSNR, "first line" or "AxB" parser written again, no pixel limit as a literal."""
    psnr_defs, literal_limits, first_lines, dims = [], [], [], []
    for path in _python_files("src", "scripts", "benchmarks"):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT).as_posix()
        if re.search(r"^def _?psnr\(", text, re.M):
            psnr_defs.append(rel)
        if f"{MAX_PIXELS:_}" in text and not rel.endswith("contract.py"):
            literal_limits.append(rel)
        if re.search(r"str\((exc|e|err)\)(\.strip\(\))?\.splitlines\(\)(\[0\]|\n)", text):
            first_lines.append(rel)
        if re.search(r'int\(\w+\) for \w+ in [\w.()]+\.split\("x"\)', text):
            dims.append(rel)
    assert psnr_defs == ["src/robust_style/pixels.py"]
    assert literal_limits == []
    assert first_lines == [], "use robust_style.errors.first_line"
    assert dims == [], "use robust_style.contract.parse_dims"


def test_one_port_helper_one_serve_helper_and_fixtures_through_the_conftest() -> None:
    """Ports from netutil.free_port, serve children from netutil.serve_process, and the
    server fixtures registered once (``pytest_plugins``), never imported by name."""
    own_ports, own_serve, fixture_imports = [], [], []
    for path in _python_files("tests", "scripts", "benchmarks"):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT).as_posix()
        if re.search(r"def _?free_port\(|\.bind\(\(\"127\.0\.0\.1\", 0\)\)(?!\s+\w+\.listen\(\))",
                     text):  # a socket bound to listen (a busy port) is no copy
            own_ports.append(rel)
        if re.search(r"Popen\(\[[^\]]*\"serve\"", text) and rel != "tests/test_install.py":
            own_serve.append(rel)  # test_install runs the installed command on purpose
        for names in re.findall(r"^from server_fixtures import ([^\n]+)", text, re.M):
            if {"model_store", "models_dir", "server"} & {n.strip() for n in names.split(",")}:
                fixture_imports.append(rel)
    assert own_ports == [], "use robust_style.netutil.free_port"
    assert own_serve == [], "use robust_style.netutil.serve_process"
    assert fixture_imports == [], "fixtures come from conftest's pytest_plugins"
