"""Layer robustness R(f): PGD in the L2 ball, the ratio, and `analyze robustness`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import skimage_photo
from torch import nn

from robust_style.analysis.robustness_metric import (
    RobustnessConfig,
    layer_robustness,
    pgd_max_feature_change,
    random_feature_change,
)
from robust_style.cli import main
from robust_style.perceptual import BackboneSpec, LossNetwork


class Constant(nn.Module):
    """A layer that ignores its input: the same activation for every image."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("value", torch.linspace(-1, 1, 4 * 8 * 8).view(1, 4, 8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand(x.shape[0], -1, -1, -1)


def tiny_network() -> LossNetwork:
    torch.manual_seed(0)
    spec = BackboneSpec("tiny", "vgg", ("conv", "relu", "const"), ("relu",), "conv", False,
                        "test network")
    stages = [("conv", nn.Conv2d(3, 8, 3, padding=1)),
              ("relu", nn.Sequential(nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU())),
              ("const", Constant())]
    return LossNetwork(spec, stages, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    from PIL import Image

    batch = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        im = Image.fromarray(skimage_photo(name)).resize((32, 32), Image.Resampling.BICUBIC)
        batch.append(torch.tensor(np.asarray(im)).permute(2, 0, 1))
    return torch.stack(batch).float() / 255.0


def test_constant_layer_has_zero_robustness_ratio(photos: torch.Tensor) -> None:
    net = tiny_network()
    (const,) = layer_robustness(net, photos, ["const"], RobustnessConfig(eps=2.0, steps=3),
                                progress=False)
    assert const.max_change == 0.0
    assert const.r == 0.0
    (relu,) = layer_robustness(net, photos, ["relu"], RobustnessConfig(eps=2.0, steps=3),
                               progress=False)
    assert relu.max_change > 0 and relu.r > 0.01


def test_robustness_ratio_grows_with_eps(photos: torch.Tensor) -> None:
    net = tiny_network()
    rs = [layer_robustness(net, photos, ["relu"], RobustnessConfig(eps=eps, steps=5),
                           progress=False)[0] for eps in (0.0, 0.25, 0.5, 1.0, 2.0)]
    values = [r.r for r in rs]
    assert values[0] == 0.0
    assert all(a < b for a, b in zip(values, values[1:], strict=False)), values
    # The denominator does not depend on eps.
    assert len({round(r.pair_distance, 6) for r in rs}) == 1


def test_pgd_beats_random_perturbations_of_the_same_norm(photos: torch.Tensor) -> None:
    net = tiny_network()

    def feature(x: torch.Tensor) -> torch.Tensor:
        return net(x, ["relu"])["relu"]

    eps = 0.5
    pgd = pgd_max_feature_change(feature, photos, RobustnessConfig(eps=eps, steps=10))
    rnd = random_feature_change(feature, photos, eps, trials=16)
    assert torch.all(pgd > rnd), (pgd, rnd)
    assert float(pgd.mean()) > 2.0 * float(rnd.mean()), (pgd, rnd)


def test_pgd_stays_in_the_ball_for_a_linear_layer(photos: torch.Tensor) -> None:
    # For a linear f the largest change with ‖δ‖₂ ≤ ε is ε·‖f‖ (operator norm, found by
    # power iteration). PGD must not exceed it (projection) and should get close (ascent).
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False).requires_grad_(False)
    v = torch.randn(1, 3, 32, 32)
    for _ in range(100):
        v = v.requires_grad_(True)
        (g,) = torch.autograd.grad(conv(v).pow(2).sum() / 2, v)
        v = (g / g.norm()).detach()
    op_norm = float(conv(v).norm())
    eps = 0.3
    change = pgd_max_feature_change(conv, photos, RobustnessConfig(eps=eps, steps=20))
    assert torch.all(change <= eps * op_norm * 1.001), (change, eps * op_norm)
    assert torch.all(change >= 0.5 * eps * op_norm), (change, eps * op_norm)


def test_analyze_robustness_writes_table_csv_and_chart(photo_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["analyze", "robustness", "--backbone", "vgg16", "--backbone-weights", "random",
                 "--backbone", "resnet50", "--backbone-weights", "random",
                 "--images", str(photo_dir), "--out", str(out), "--image-size", "32",
                 "--max-images", "4", "--steps", "2", "--no-progress",
                 "--layers", "relu1_1", "relu3_3", "conv1", "layer2"])
    assert code == 0
    text = capsys.readouterr().out
    assert "R(f)" in text and "relu3_3" in text and "layer2" in text
    with open(out / "robustness.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["backbone"], r["layer"]) for r in rows] == [
        ("vgg16", "relu1_1"), ("vgg16", "relu3_3"), ("resnet50", "conv1"), ("resnet50", "layer2")]
    for r in rows:
        assert r["weights"] == "random init" and r["n_images"] == "4" and r["eps"] == "1"
        assert float(r["r"]) == pytest.approx(float(r["max_change"]) / float(r["pair_distance"]),
                                              rel=1e-4)
        assert 0 < float(r["r"]) < 10
    from robust_style.fileio import file_mode

    assert (out / "robustness.csv").stat().st_mode & 0o777 == file_mode()  # not mkstemp's 0600
    png = (out / "robustness.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.parametrize("argv, message", [
    (["--max-images", "1"], "at least 2"),
    (["--layers", "relu9_9"], "unknown layer"),
])
def test_analyze_robustness_bad_input_is_one_line(photo_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  argv: list[str], message: str) -> None:
    code = main(["analyze", "robustness", "--backbone", "vgg16", "--images", str(photo_dir),
                 "--out", str(tmp_path), *argv])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_each_backbone_weights_follows_its_backbone(photo_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["analyze", "robustness", "--backbone", "vgg16", "--backbone-weights", "random",
              "--backbone-weights", "random", "--images", str(photo_dir), "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "must follow its own --backbone" in capsys.readouterr().err


def test_shared_vgg16_first_layers_are_more_robust(shared_vgg16: Path, photos: torch.Tensor
                                                   ) -> None:
    from robust_style.perceptual import build_loss_network

    net = build_loss_network("vgg16-caffe", shared_vgg16)
    res = layer_robustness(net, photos, ["relu1_2", "relu4_3"],
                           RobustnessConfig(eps=1.0, steps=3), progress=False)
    assert res[0].r < res[1].r, [(r.layer, r.r) for r in res]
