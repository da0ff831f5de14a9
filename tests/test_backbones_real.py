"""The Oxford VGG-19 and torchvision's AlexNet as loss networks, with the real weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import skimage_photo

from robust_style.cli import main
from robust_style.perceptual import BACKBONES, build_loss_network
from robust_style.perceptual.weights import load_registry
from robust_style.perceptual.weights.store import MismatchError, import_file


def _photos(size: int = 96) -> torch.Tensor:
    out = []
    for name in ("astronaut", "coffee", "chelsea"):
        x = torch.from_numpy(skimage_photo(name).copy()).permute(2, 0, 1)[None].float() / 255
        out.append(torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                                   antialias=True))
    return torch.cat(out)


def test_default_layers_come_from_the_literature() -> None:
    assert BACKBONES["vgg19-caffe"].style_layers == ("relu1_1", "relu2_1", "relu3_1",
                                                     "relu4_1", "relu5_1")
    assert BACKBONES["vgg19-caffe"].content_layer == "relu4_2"
    assert BACKBONES["alexnet"].layers == ("relu1", "relu2", "relu3", "relu4", "relu5")


@pytest.mark.parametrize("name, fixture", [("vgg19-caffe", "shared_vgg19"),
                                           ("alexnet", "shared_alexnet")])
def test_real_weights_separate_photos_a_random_net_cannot(name: str, fixture: str,
                                                          request: pytest.FixtureRequest) -> None:
    """Deep features of unrelated photos: nearly orthogonal for the trained network, nearly
    parallel for a random one (the check of ../shared/README.md)."""
    path = request.getfixturevalue(fixture)
    layer = BACKBONES[name].layers[-1]
    x = _photos()

    def mean_cosine(net: torch.nn.Module) -> float:
        with torch.no_grad():
            f = net(x, [layer])[layer].flatten(1)
        f = torch.nn.functional.normalize(f, dim=1)
        sim = f @ f.T
        return float(sim[~torch.eye(3, dtype=torch.bool)].mean())

    torch.manual_seed(0)
    assert mean_cosine(build_loss_network(name, path)) < 0.5 < mean_cosine(
        build_loss_network(name, None))


def test_caffe_vgg19_preprocessing(shared_vgg19: Path) -> None:
    net = build_loss_network("vgg19-caffe", shared_vgg19)
    mean = torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1) / 255.0
    assert net.normalize(mean.expand(1, 3, 4, 4)).abs().max() < 1e-4


def test_registry_imports_check_the_shared_files(tmp_path: Path, shared_vgg19: Path,
                                                 shared_alexnet: Path) -> None:
    reg = load_registry()
    _, vgg = import_file(reg["vgg19-caffe"], shared_vgg19, home=tmp_path, link=True)
    assert "vgg19-caffe" in vgg.summary
    _, alex = import_file(reg["alexnet-features"], shared_alexnet, home=tmp_path, link=True)
    assert "alexnet" in alex.summary
    with pytest.raises(MismatchError, match="mismatch"):  # the wrong file for the entry
        import_file(reg["vgg19-caffe"], shared_alexnet, home=tmp_path / "x", link=True)


def test_train_two_steps_with_alexnet(tmp_path: Path, photo_dir: Path, shared_alexnet: Path,
                                      shared_style: Path) -> None:
    run = tmp_path / "run"
    assert main(["-q", "train", "--style", str(shared_style), "--content", str(photo_dir),
                 "--out", str(run), "--backbone", "alexnet", "--backbone-weights",
                 str(shared_alexnet), "--image-size", "64", "--batch-size", "2",
                 "--max-steps", "2", "--workers", "0", "--sample-interval", "0"]) == 0
    assert (run / "style_model.pt").is_file()
