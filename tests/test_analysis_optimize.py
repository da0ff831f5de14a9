"""Gatys per-image optimisation: the loss goes down, images are written, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import skimage_photo
from PIL import Image

from robust_style.analysis.images import load_image
from robust_style.analysis.optimize import GatysConfig, optimize_image
from robust_style.cli import main
from robust_style.perceptual import build_loss_network


@pytest.fixture(scope="module")
def content_style(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("gatys")
    content, style = d / "chelsea.png", d / "coffee.jpg"
    Image.fromarray(skimage_photo("chelsea")).save(content)
    Image.fromarray(skimage_photo("coffee")).save(style)
    return content, style


@pytest.fixture(scope="module")
def random_vgg16() -> torch.nn.Module:
    return build_loss_network("vgg16", None)


@pytest.mark.parametrize("optimizer, init", [("lbfgs", "content"), ("adam", "noise")])
def test_optimize_lowers_the_loss(content_style: tuple[Path, Path], random_vgg16: torch.nn.Module,
                                  optimizer: str, init: str) -> None:
    net = random_vgg16
    content = load_image(content_style[0], 32)
    style = load_image(content_style[1], 32)
    cfg = GatysConfig(style_layers=("relu1_2", "relu2_2"), content_layer="relu2_2",
                      steps=4, optimizer=optimizer, init=init, tv_weight=1.0)
    seen: list[int] = []
    result = optimize_image(net, content, style, cfg, progress=False,
                            on_step=lambda step, img, loss: seen.append(step))
    assert seen == list(range(1, 5))
    assert result.final_loss < 0.8 * result.initial_loss, (result.initial_loss, result.final_loss)
    assert result.image.shape == content.shape
    assert float(result.image.min()) >= 0.0 and float(result.image.max()) <= 1.0
    assert not torch.equal(result.image, content)


def test_single_layer_mode_only_matches_that_layer(content_style: tuple[Path, Path],
                                                   random_vgg16: torch.nn.Module) -> None:
    net = random_vgg16
    content = load_image(content_style[0], 32)
    style = load_image(content_style[1], 32)
    cfg = GatysConfig(style_layers=("relu2_1",), content_layer=None, steps=4, init="noise")
    result = optimize_image(net, content, style, cfg, progress=False)
    assert result.final_loss < result.initial_loss


def test_optimize_cli_with_shared_vgg16(shared_vgg16: Path, shared_style: Path, tmp_path: Path,
                                        content_style: tuple[Path, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "res" / "styled.png"
    code = main(["optimize", "--content", str(content_style[0]), "--style", str(shared_style),
                 "--backbone", "vgg16-caffe", "--backbone-weights", str(shared_vgg16),
                 "-o", str(out), "--image-size", "40", "--steps", "4", "--save-every", "2",
                 "--no-progress"])
    assert code == 0
    text = capsys.readouterr().out
    first, last = (float(v) for v in text.split("loss ")[1].split(" in ")[0].split(" -> "))
    assert last < first
    img = np.asarray(Image.open(out))
    assert img.shape[0] == 40 and img.shape[2] == 3  # shorter side of chelsea is its height
    assert (tmp_path / "res" / "styled_00002.png").is_file()
    assert not (tmp_path / "res" / "styled_00004.png").exists()  # the last step is OUT itself
    assert [p.name for p in (tmp_path / "res").iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("argv, message", [
    (["--style-layer", "relu9_1"], "unknown layer"),
    (["--steps", "0"], "steps"),
    (["-o", "x.gif"], ".png or .jpg"),
])
def test_optimize_bad_input_is_one_line(content_style: tuple[Path, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str], argv: list[str],
                                        message: str) -> None:
    args = ["optimize", "--content", str(content_style[0]), "--style", str(content_style[1]),
            "--backbone", "vgg16", "-o", str(tmp_path / "o.png"), "--image-size", "32",
            "--no-progress", *argv]
    code = main(args)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
