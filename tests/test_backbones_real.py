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


def _keras_h5_from(state_dict: dict, path: Path) -> Path:
    """Write ``vgg19().features`` weights in the layout of Keras' notop .h5 (BGR, HWIO)."""
    h5py = pytest.importorskip("h5py")
    index = 0
    with h5py.File(path, "w") as f:
        for block, n in enumerate((2, 2, 4, 4, 4), start=1):
            for i in range(1, n + 1):
                name = f"block{block}_conv{i}"
                w = state_dict[f"{index}.weight"]
                if index == 0:
                    w = w.flip(1)
                g = f.create_group(name)
                g.attrs["weight_names"] = [f"{name}_W_1:0".encode(), f"{name}_b_1:0".encode()]
                g[f"{name}_W_1:0"] = w.permute(2, 3, 1, 0).numpy()
                g[f"{name}_b_1:0"] = state_dict[f"{index}.bias"].numpy()
                index += 2
            index += 1
    return path


def test_keras_h5_converts_exactly_and_its_md5_is_checked(tmp_path: Path, shared_vgg19: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    from robust_style.perceptual.weights.keras_h5 import convert_keras_vgg19

    ref = torch.load(shared_vgg19, weights_only=True)
    h5 = _keras_h5_from(ref, tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")
    got = convert_keras_vgg19(h5)
    assert sorted(got) == sorted(ref) and all(torch.equal(got[k], ref[k]) for k in ref)
    # Not Keras' file (another md5): refused, one line, nothing cached.
    assert main(["weights", "import", "vgg19-caffe-keras", str(h5), "--home",
                 str(tmp_path / "home")]) == 2
    err = capsys.readouterr().err
    assert "md5" in err and "253f8cb515780f3b799900260a226db6" in err and err.count("\n") == 1
    assert not (tmp_path / "home" / "weights" / "vgg19-caffe-keras.pt").exists()
    # An h5 file for an entry that is not VGG-19.
    assert main(["weights", "import", "alexnet", str(h5), "--home", str(tmp_path / "h")]) == 2
    assert "Keras" in capsys.readouterr().err


def test_rf_of_the_first_style_layers_with_real_alexnet(photo_dir: Path, tmp_path: Path,
                                                        shared_alexnet: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    import csv

    out = tmp_path / "rf"
    assert main(["analyze", "robustness", "--backbone", "alexnet", "--backbone-weights",
                 str(shared_alexnet), "--backbone", "vgg19", "--backbone-weights", "random",
                 "--first-style-layers", "2", "--images", str(photo_dir), "--out", str(out),
                 "--image-size", "64", "--max-images", "3", "--steps", "2",
                 "--no-progress"]) == 0
    with open(out / "robustness.csv", newline="") as fh:
        rows = [(r["backbone"], r["layer"], float(r["r"])) for r in csv.DictReader(fh)]
    assert [r[:2] for r in rows] == [("alexnet", "relu1"), ("alexnet", "relu2"),
                                     ("vgg19", "relu1_1"), ("vgg19", "relu2_1")]
    assert rows[0][2] < rows[1][2]  # the real AlexNet's first layer is the more robust
    assert main(["analyze", "robustness", "--backbone", "alexnet", "--first-style-layers", "0",
                 "--images", str(photo_dir), "--out", str(out)]) == 2
    assert "at least 1" in capsys.readouterr().err
