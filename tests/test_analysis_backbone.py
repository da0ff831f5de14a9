"""Adversarial backbone training with MadryLab's robustness, and loader parity with it.

Skipped when the optional ``robustness`` library (``robust-style[robustness]``) is not
installed. Everything else is real: the library's own ``train_model`` and
``make_and_restore_model`` run on the CPU through the project's compatibility layer.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from conftest import skimage_photo
from helpers_checkpoints import random_resnet50, save_madry_checkpoint
from PIL import Image

from robust_style.cli import main
from robust_style.perceptual import build_loss_network, load_checkpoint

pytestmark = pytest.mark.skipif(importlib.util.find_spec("robustness") is None,
                                reason="needs the optional extra robust-style[robustness]")

LAYERS = ("layer1", "layer2", "layer3", "layer4")


def madry_features(ckpt: Path, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Features of ``ckpt`` as MadryLab's own loader and model compute them (forward hooks)."""
    from robust_style.analysis.robustness_compat import import_robustness, on_device

    rb = import_robustness()
    with on_device("cpu"):
        model, _ = rb.model_utils.make_and_restore_model(
            arch="resnet50", dataset=rb.datasets.ImageNet("/nonexistent"), resume_path=str(ckpt))
    model.eval()
    out: dict[str, torch.Tensor] = {}
    for name in LAYERS:
        getattr(model.model, name).register_forward_hook(
            lambda _m, _i, o, name=name: out.__setitem__(name, o.detach()))
    with torch.no_grad():
        logits = model(x)[0] if isinstance(model(x), tuple) else model(x)
    out["logits"] = logits
    return out


def test_compat_shim_and_cuda_redirect_are_scoped() -> None:
    from robust_style.analysis.robustness_compat import import_robustness, on_device

    rb = import_robustness()
    assert "torchvision.models.utils" in sys.modules
    assert hasattr(rb.train, "train_model")
    original = torch.Tensor.cuda
    with on_device("cpu"):
        assert torch.ones(2).cuda().device.type == "cpu"
        assert torch.nn.Linear(2, 2).cuda().weight.device.type == "cpu"
    assert torch.Tensor.cuda is original


def test_loader_parity_with_make_and_restore_model(tmp_path: Path) -> None:
    ckpt = save_madry_checkpoint(tmp_path / "madry.pt", random_resnet50(seed=3))
    x = torch.rand(2, 3, 64, 64)
    ref = madry_features(ckpt, x)
    net = build_loss_network("robust-resnet50", ckpt)
    with torch.no_grad():
        ours = net(x, LAYERS)
    for name in LAYERS:
        # Equal up to float rounding (the project folds bottleneck BNs into the convs).
        scale = float(ref[name].abs().max())
        torch.testing.assert_close(ours[name], ref[name], rtol=0, atol=2e-5 * scale + 1e-6)
    assert ref["logits"].shape == (2, 1000)


@pytest.fixture(scope="module")
def two_class_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    for cls, names in {"animals": ("chelsea", "astronaut"), "things": ("coffee", "rocket")}.items():
        (root / cls).mkdir()
        for name in names:
            Image.fromarray(skimage_photo(name)).resize((64, 64)).save(root / cls / f"{name}.png")
    return root


def test_backbone_train_checkpoint_loads_and_matches_robustness(
        two_class_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    init_net = random_resnet50(seed=5)
    init = save_madry_checkpoint(tmp_path / "init.pt", init_net)
    code = main(["backbone", "train", "--data", str(two_class_folder), "--out", str(out),
                 "--init", str(init), "--eps", "0.5", "--attack-steps", "1", "--batch-size", "4",
                 "--image-size", "40", "--epochs", "1", "--lr", "0.001"])
    assert code == 0
    assert "animals, things" in capsys.readouterr().out
    weights = out / "robust-resnet50.pt"
    # Weights only: the project's safe loader reads it without --trust-checkpoint.
    payload = load_checkpoint(weights)
    assert payload["epoch"] == 1
    assert any(k.startswith("module.attacker.model.") for k in payload["model"])
    trained_conv1 = payload["model"]["module.model.conv1.weight"]
    start = init_net.conv1.weight.detach()
    # Started from --init and trained: a step away from it, but much nearer to it than an
    # unrelated random init (relative distance ~1.4 between two independent inits).
    fresh = random_resnet50(seed=6).conv1.weight.detach()
    assert float((fresh - start).norm()) > 1.2 * float(start.norm())
    assert 0 < float((trained_conv1 - start).norm()) < 0.6 * float(start.norm())
    net = build_loss_network("robust-resnet50", weights)
    # The same network as robustness' own (dill-pickled) checkpoint, read by its own loader.
    library = out / "checkpoint.pt.latest"
    assert library.is_file()
    x = torch.rand(2, 3, 48, 48)
    ref = madry_features(library, x)
    with torch.no_grad():
        ours = net(x, LAYERS)
    for name in LAYERS:
        assert torch.isfinite(ours[name]).all()
        # Equal up to float rounding (the project folds bottleneck BNs into the convs).
        scale = float(ref[name].abs().max())
        torch.testing.assert_close(ours[name], ref[name], rtol=0, atol=2e-5 * scale + 1e-6)


def test_backbone_train_rejects_a_flat_folder(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(skimage_photo("coffee")).save(flat / "coffee.png")
    code = main(["backbone", "train", "--data", str(flat), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "sub-folder" in err and "Traceback" not in err
