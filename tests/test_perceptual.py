"""Loss networks: checkpoint layouts, feature parity, gradients, losses."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from helpers_checkpoints import random_resnet50, rewrite_as_cuda_saved, save_madry_checkpoint
from torchvision import models

from robust_style.errors import UserError
from robust_style.perceptual import (
    BACKBONES,
    build_loss_network,
    gram_matrix,
    load_checkpoint,
    style_loss,
    tv_loss,
)


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    return random_resnet50(seed=1)


def assert_same_features(ours: torch.Tensor, ref: torch.Tensor) -> None:
    """Equal up to float rounding: the bottleneck BNs are folded into the convolutions."""
    scale = float(ref.abs().max())
    torch.testing.assert_close(ours, ref, rtol=0, atol=2e-5 * scale + 1e-6)


def torchvision_features(net: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    h = (x - mean) / std
    out = {}
    h = net.conv1(h)
    out["conv1"] = h
    h = net.relu(net.bn1(h))
    out["relu"] = h
    h = net.maxpool(h)
    for name in ("layer1", "layer2", "layer3", "layer4"):
        h = getattr(net, name)(h)
        out[name] = h
    return out


LAYOUTS = {
    "madry-model": dict(wrapper="model"),
    "madry-state_dict": dict(wrapper="state_dict"),
    "madry-legacy-serialisation": dict(wrapper="model", legacy=True),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_madry_layouts_give_torchvision_features(tmp_path: Path, resnet: torch.nn.Module,
                                                 layout: str) -> None:
    ckpt = save_madry_checkpoint(tmp_path / "ckpt.pt", resnet, **LAYOUTS[layout])
    net = build_loss_network("robust-resnet50", ckpt)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ours = net(x)
        ref = torchvision_features(resnet, x)
    assert set(ours) == set(ref)
    for name in ref:  # bottleneck BNs are folded into the convs: equal up to float rounding
        assert_same_features(ours[name], ref[name])


def test_checkpoint_saved_on_cuda_loads_on_cpu(tmp_path: Path, resnet: torch.nn.Module) -> None:
    ckpt = save_madry_checkpoint(tmp_path / "cuda.pt", resnet)
    rewrite_as_cuda_saved(ckpt)
    with pytest.raises(RuntimeError):  # proves the file really claims CUDA storages
        torch.load(ckpt, weights_only=True)
    net = build_loss_network("robust-resnet50", ckpt)
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        assert_same_features(net(x, ["layer2"])["layer2"], torchvision_features(resnet, x)["layer2"])


def test_plain_torchvision_state_dicts(tmp_path: Path, resnet: torch.nn.Module) -> None:
    path = tmp_path / "r50.pth"
    torch.save(resnet.state_dict(), path)
    net = build_loss_network("resnet50", path)
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        assert_same_features(net(x, ["layer3"])["layer3"], torchvision_features(resnet, x)["layer3"])
    # A DataParallel-wrapped plain state dict loads too.
    torch.save({f"module.{k}": v for k, v in resnet.state_dict().items()}, path)
    build_loss_network("resnet50", path)


def test_vgg_torchvision_layouts(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vgg = models.vgg19(weights=None).eval()
    full, feats = tmp_path / "vgg19.pth", tmp_path / "vgg19-features.pth"
    torch.save(vgg.state_dict(), full)
    torch.save(vgg.features.state_dict(), feats)
    x = torch.rand(1, 3, 32, 32)
    norm = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = vgg.features[:27](norm)  # up to relu4_4 (index 26)
        for path in (full, feats):
            ours = build_loss_network("vgg19", path)(x, ["relu4_4"])["relu4_4"]
            torch.testing.assert_close(ours, ref, rtol=0, atol=0)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_checkpoint_that_runs_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "payload": _RunsCode(marker)}, path)
    with pytest.raises(UserError, match="--trust-checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_trust_flag_allows_full_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "ns.pt"
    import argparse

    torch.save({"args": argparse.Namespace(arch="resnet50"), "w": torch.ones(2)}, path)
    with pytest.raises(UserError, match="refusing"):
        load_checkpoint(path)
    assert load_checkpoint(path, trust=True)["args"].arch == "resnet50"


def test_wrong_architecture_names_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(UserError, match=r"missing keys \(.*layer1\.0\.conv3"):
        build_loss_network("robust-resnet50", path)


def test_missing_and_truncated_files_give_one_line_errors(tmp_path: Path,
                                                          resnet: torch.nn.Module) -> None:
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    ckpt = save_madry_checkpoint(tmp_path / "full.pt", resnet)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(UserError, match="truncated or corrupt") as info:
        load_checkpoint(cut)
    assert "\n" not in str(info.value)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(pickle.dumps("hello")[:3])
    with pytest.raises(UserError):
        load_checkpoint(garbage)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_gradients_reach_out_of_range_pixels(name: str) -> None:
    net = build_loss_network(name, None)
    assert all(not p.requires_grad for p in net.parameters())
    x = torch.rand(1, 3, 32, 32)
    x[0, :, :4, :4] = 1.7  # out of range: a clamping normaliser would zero these
    x[0, :, -4:, -4:] = -0.6
    x.requires_grad_(True)
    feats = net(x, list(BACKBONES[name].style_layers))
    sum(f.square().mean() for f in feats.values()).backward()
    assert x.grad is not None
    assert x.grad[0, :, :4, :4].abs().sum() > 0
    assert x.grad[0, :, -4:, -4:].abs().sum() > 0


def test_loss_network_stays_in_eval_mode() -> None:
    net = build_loss_network("resnet50", None)
    net.train()
    assert not net.training and not any(m.training for m in net.modules())


def test_average_pooling_option() -> None:
    for name in ("resnet50", "vgg16"):
        net = build_loss_network(name, None, pooling="avg")
        kinds = {type(m).__name__ for m in net.modules()}
        assert "AvgPool2d" in kinds and "MaxPool2d" not in kinds
    with pytest.raises(UserError):
        build_loss_network("vgg16", None, pooling="median")


def test_unknown_backbone_and_layer() -> None:
    with pytest.raises(UserError, match="choose one of"):
        build_loss_network("googlenet", None)
    with pytest.raises(UserError, match="unknown layer"):
        build_loss_network("vgg16", None)(torch.rand(1, 3, 16, 16), ["layer9"])


def test_shared_vgg16_caffe_loads_strictly_with_its_preprocessing(shared_vgg16: Path) -> None:
    net = build_loss_network("vgg16-caffe", shared_vgg16)
    # An image equal to the Caffe mean (in 0..255) is all zeros after preprocessing, so
    # relu1_1 must equal relu(bias of conv1_1) everywhere.
    mean = torch.tensor([123.68, 116.779, 103.939]).view(1, 3, 1, 1) / 255.0
    x = mean.expand(1, 3, 16, 16).clone()
    raw = torch.load(shared_vgg16, weights_only=True)
    with torch.no_grad():
        relu11 = net(x, ["relu1_1"])["relu1_1"]
    expected = torch.relu(raw["0.bias"]).view(1, -1, 1, 1).expand_as(relu11)
    torch.testing.assert_close(relu11[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1])
    # Real ImageNet weights give a sensible activation scale on a real-looking input.
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64), ["relu5_3"])["relu5_3"]
    assert torch.isfinite(out).all() and out.abs().max() > 0


def test_gram_matrix_of_channels_last_features_equals_the_contiguous_one() -> None:
    f = torch.rand(2, 8, 5, 7)
    nhwc = f.contiguous(memory_format=torch.channels_last)
    assert not nhwc.is_contiguous()
    torch.testing.assert_close(gram_matrix(nhwc), gram_matrix(f))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        g = gram_matrix(nhwc)
    assert g.dtype == torch.float32
    torch.testing.assert_close(g, gram_matrix(f), rtol=2e-2, atol=1e-3)


def test_gram_matrix_matches_hand_computation() -> None:
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, -1.0]]]])  # 1x2x2x2
    # Channels flattened: a=[1,2,3,4], b=[0,1,0,-1]; C*H*W = 8.
    expected = torch.tensor([[[30.0, -2.0], [-2.0, 2.0]]]) / 8
    torch.testing.assert_close(gram_matrix(f), expected)


def test_style_and_tv_losses() -> None:
    f = torch.rand(2, 4, 5, 5)
    g = {"a": gram_matrix(f)}
    assert float(style_loss(g, {"a": g["a"][:1]})) > 0
    assert float(style_loss(g, {"a": g["a"]})) == 0
    assert float(tv_loss(torch.ones(1, 3, 8, 8))) == 0
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 1, 8, 8)
    assert float(tv_loss(ramp)) == pytest.approx(1.0)
