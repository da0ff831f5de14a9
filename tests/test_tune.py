"""`robust-style tune`: a real (tiny) sweep with the shared AlexNet, judged; the knee rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from robust_style.cli import main
from robust_style.errors import UserError
from robust_style.evaluate.tune import TuneConfig, TunePoint, TuneResult, choose_knee
from robust_style.perceptual.weights import load_registry
from robust_style.perceptual.weights.store import import_file


def test_knee_is_the_point_nearest_the_ideal_corner() -> None:
    # style falls, content rises with the ratio; the middle point balances both.
    assert choose_knee([1.0, 0.5, 0.45, 0.44], [0.1, 0.15, 0.4, 0.9]) == 1
    assert choose_knee([1.0, 0.2, 0.0], [0.0, 0.1, 1.0]) == 1
    assert choose_knee([0.5, 0.5, 0.5], [0.3, 0.2, 0.4]) == 1  # flat style: least content


def test_a_knee_at_the_grid_edge_says_which_way_to_extend(tmp_path: Path) -> None:
    cfg = TuneConfig(tmp_path, tmp_path, tmp_path, tmp_path, "alexnet", ratios=(9.0, 1.0, 3.0))
    points = tuple(TunePoint(r, 1.0, r, 0.1, f"ratio-{r:g}", 0.5, 0.5, 0.5) for r in cfg.ratios)
    inside, low, high = (TuneResult(cfg, "alexnet", points, k, None) for k in (2, 1, 0))
    assert not inside.at_edge and inside.edge_advice() is None
    assert low.at_edge and "below it" in low.edge_advice()
    assert high.at_edge and "above it" in high.edge_advice()


def test_too_few_ratios_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="three"):
        TuneConfig(tmp_path, tmp_path, tmp_path, tmp_path, "alexnet", ratios=(1.0, 2.0))


def test_tune_sweep_end_to_end(tmp_path: Path, photo_dir: Path, shared_alexnet: Path,
                               shared_vgg19: Path, shared_style: Path,
                               monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    reg = load_registry()
    import_file(reg["vgg19-caffe"], shared_vgg19, home=home, link=True)
    import_file(reg["alexnet-features"], shared_alexnet, home=home, link=True)
    monkeypatch.setenv("ROBUST_STYLE_HOME", str(home))
    heldout = tmp_path / "heldout"
    heldout.mkdir()
    for p in sorted((photo_dir / "b").iterdir())[:2]:
        Image.open(p).convert("RGB").save(heldout / f"{p.stem}.png")
    out = tmp_path / "tune"
    argv = ["-q", "tune", "--backbone", "alexnet-features", "--style", str(shared_style),
            "--content", str(photo_dir / "a"), "--photos", str(heldout), "--out", str(out),
            "--ratios", "1", "20", "400", "--steps", "3", "--image-size", "32",
            "--eval-size", "48", "--no-progress"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    data = json.loads((out / "tune.json").read_text())
    assert data["backbone"] == "alexnet" and len(data["points"]) == 3
    styles = [p["style_weight"] for p in data["points"]]
    assert styles[0] < styles[1] < styles[2]  # same unit, growing ratio
    assert styles[1] == pytest.approx(20 * styles[0], rel=1e-3)
    assert data["chosen_ratio"] in (1, 20, 400)
    assert data["knee_at_grid_edge"] == (data["chosen_ratio"] != 20)
    assert ("at the edge of the grid" in (out / "tune.md").read_text()) == data["knee_at_grid_edge"]
    assert f"--style-weight {data['defaults']['style_weight']:.4g}" in text
    for name in ("tune.md", "tune.png", "grid.png"):
        assert (out / name).stat().st_size > 0
    mtime = (out / "runs" / "ratio-20" / "style_model.pt").stat().st_mtime_ns
    assert main(argv) == 0  # finished runs are reused, not retrained
    assert (out / "runs" / "ratio-20" / "style_model.pt").stat().st_mtime_ns == mtime
    run_cfg = json.loads((out / "runs" / "ratio-20" / "config.json").read_text())
    again = json.loads((out / "tune.json").read_text())["points"][1]
    assert again["style_weight"] == run_cfg["style_weight"]  # what the run was trained with
    capsys.readouterr()
    assert main([*argv[:-1], "--steps", "4", "--no-progress"]) == 2  # another budget
    err = capsys.readouterr().err.strip()
    assert "another budget" in err and "--steps 4 (run: 3)" in err and len(err.splitlines()) == 1
