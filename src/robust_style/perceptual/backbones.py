"""Loss networks: frozen image classifiers whose activations define perceptual losses.

Backbones, chosen by name (:data:`BACKBONES`):

``robust-resnet50``
    torchvision ResNet-50 loaded from a MadryLab ``robustness`` checkpoint, the
    adversarially trained networks of Engstrom et al. 2019 ("Adversarial robustness as
    a prior for learned representations"), used as a style-transfer loss by Nakano 2019
    ("Adversarially robust neural style transfer", Distill).
``resnet50``
    a torchvision-layout ResNet-50 state dict (standard, non-robust training).
``vgg16``, ``vgg19``
    torchvision-layout VGG state dicts (``features.*``, or the bare ``features`` module).
``vgg16-caffe``, ``vgg19-caffe``
    the original Oxford/Caffe VGG-16 and VGG-19 of Simonyan & Zisserman (Johnson et al.
    2016 used the VGG-16; Gatys et al. 2016 and Nakano 2019 the VGG-19): RGB in 0..255
    minus the ImageNet mean, no division by a standard deviation.
``alexnet``
    torchvision's AlexNet (Krizhevsky et al. 2012, torchvision's one-GPU variant), the
    ``features`` part: taps ``relu1`` ... ``relu5`` after its five convolutions, the
    layers LPIPS reads (Zhang et al. 2018) and one of the networks of Ilyas et al.'s R(f)
    figure. torchvision input convention (ImageNet mean/std).

Input is RGB in [0, 1], NCHW. Normalisation happens inside the network and never
clamps, so gradients reach every pixel, even out-of-range ones. Parameters are frozen
and the module stays in eval mode (batch-norm statistics never move).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision import models

from robust_style.errors import UserError
from robust_style.perceptual.checkpoint import (
    extract_resnet50_state_dict,
    extract_state_dict,
    load_checkpoint,
    load_state_dict_strict,
)

__all__ = [
    "BACKBONES",
    "CAFFE_BACKBONES",
    "BackboneSpec",
    "LossNetwork",
    "build_loss_network",
    "backbone_spec",
]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_255 = (123.68, 116.779, 103.939)

_VGG_CFG = {
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
_ALEXNET_LAYERS = ("relu1", "relu2", "relu3", "relu4", "relu5")
#: Backbones whose input is Caffe's: 0..255 RGB minus the mean, no std division.
CAFFE_BACKBONES = ("vgg16-caffe", "vgg19-caffe")


@dataclass(frozen=True)
class BackboneSpec:
    """Static facts about a backbone: its layers and default loss layers."""

    name: str
    family: str  # "resnet" or "vgg" (AlexNet is a plain conv/ReLU/pool stack too)
    layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    content_layer: str
    needs_weights: bool
    description: str


_RESNET_LAYERS = ("conv1", "relu", "layer1", "layer2", "layer3", "layer4")


def _vgg_layer_names(cfg: Sequence[int]) -> tuple[str, ...]:
    return tuple(f"relu{b + 1}_{i + 1}" for b, n in enumerate(cfg) for i in range(n))


BACKBONES: dict[str, BackboneSpec] = {
    # Nakano 2019: style from every stage, content from layer3.
    "robust-resnet50": BackboneSpec(
        "robust-resnet50", "resnet", _RESNET_LAYERS, ("layer1", "layer2", "layer3", "layer4"),
        "layer3", True, "ResNet-50 from a MadryLab robustness checkpoint (adversarially trained)"),
    "resnet50": BackboneSpec(
        "resnet50", "resnet", _RESNET_LAYERS, ("layer1", "layer2", "layer3", "layer4"),
        "layer3", False, "ResNet-50, torchvision state dict (standard training)"),
    # Johnson et al. 2016: style relu1_2, relu2_2, relu3_3, relu4_3; content relu2_2.
    "vgg16": BackboneSpec(
        "vgg16", "vgg", _vgg_layer_names(_VGG_CFG["vgg16"]),
        ("relu1_2", "relu2_2", "relu3_3", "relu4_3"), "relu2_2", False,
        "VGG-16, torchvision state dict"),
    "vgg16-caffe": BackboneSpec(
        "vgg16-caffe", "vgg", _vgg_layer_names(_VGG_CFG["vgg16"]),
        ("relu1_2", "relu2_2", "relu3_3", "relu4_3"), "relu2_2", True,
        "VGG-16, original Caffe weights (0..255 input minus mean)"),
    # Gatys et al. 2016 layers for VGG-19: relu1_1..relu5_1, content relu4_2.
    "vgg19": BackboneSpec(
        "vgg19", "vgg", _vgg_layer_names(_VGG_CFG["vgg19"]),
        ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), "relu4_2", False,
        "VGG-19, torchvision state dict"),
    "vgg19-caffe": BackboneSpec(
        "vgg19-caffe", "vgg", _vgg_layer_names(_VGG_CFG["vgg19"]),
        ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), "relu4_2", True,
        "VGG-19, original Oxford/Caffe weights (0..255 input minus mean)"),
    # AlexNet: style from every conv layer's ReLU, the five layers LPIPS compares (Zhang
    # et al. 2018) and the analogue of Gatys et al.'s one-layer-per-block choice; content
    # from relu4, the fourth of five stages like Gatys et al.'s relu4_2 (AlexNet has no
    # published style-transfer defaults).
    "alexnet": BackboneSpec(
        "alexnet", "vgg", _ALEXNET_LAYERS, _ALEXNET_LAYERS, "relu4", True,
        "AlexNet, torchvision state dict (features)"),
}


def backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise UserError(f"unknown backbone {name!r}; choose one of: "
                        f"{', '.join(BACKBONES)}") from None


class LossNetwork(nn.Module):
    """A frozen backbone that returns the activations of named layers.

    ``forward(x, layers)`` runs only as deep as the deepest requested layer and returns
    ``{layer: activation}``.
    """

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(self, spec: BackboneSpec, stages: Sequence[tuple[str, nn.Module]],
                 mean: Sequence[float], std: Sequence[float], scale: float = 1.0) -> None:
        super().__init__()
        self.spec = spec
        self.stage_names = [n for n, _ in stages]
        self.stages = nn.ModuleList([m for _, m in stages])
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.scale = float(scale)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LossNetwork:
        """Stays in eval mode: batch-norm statistics of a loss network never move."""
        return super().train(False)

    @property
    def layers(self) -> tuple[str, ...]:
        return self.spec.layers

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB to the backbone's input space. No clamp: gradients reach every pixel."""
        return (x * self.scale - self.mean) / self.std

    def forward(self, x: torch.Tensor, layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = set(self.layers if layers is None else layers)
        unknown = wanted - set(self.stage_names)
        if unknown:
            raise UserError(f"unknown layer(s) {sorted(unknown)} for {self.spec.name}; "
                            f"choose from {', '.join(self.layers)}")
        out: dict[str, torch.Tensor] = {}
        h = self.normalize(x)
        for name, stage in zip(self.stage_names, self.stages, strict=True):
            h = stage(h)
            if name in wanted:
                out[name] = h
                if len(out) == len(wanted):
                    break
        return out


def _avg_pool_like(pool: nn.MaxPool2d) -> nn.AvgPool2d:
    # Gatys et al. 2016 found average pooling gives smoother gradients and better
    # results; Nakano 2019 suggests it against ResNet checkerboard artifacts.
    return nn.AvgPool2d(pool.kernel_size, pool.stride, pool.padding, ceil_mode=pool.ceil_mode)


def _fold_bottleneck_bn(net: models.ResNet) -> None:
    """Fold each bottleneck's batch norms into the convolutions before them.

    Exact in eval mode up to float rounding (a frozen BN is an affine map), and it removes
    53 memory-bound BN passes from every forward and backward: about 1.7x faster loss
    steps on CPU (docs/training.md). The stem's ``bn1`` stays, so the ``conv1`` tap keeps
    its meaning (the convolution's raw output).
    """
    net.eval()
    for block in net.modules():
        if isinstance(block, models.resnet.Bottleneck):
            for conv, bn in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")):
                setattr(block, conv, fuse_conv_bn_eval(getattr(block, conv), getattr(block, bn)))
                setattr(block, bn, nn.Identity())
            if block.downsample is not None:
                conv, bn = block.downsample[0], block.downsample[1]
                block.downsample = nn.Sequential(fuse_conv_bn_eval(conv, bn))


def _resnet_stages(net: models.ResNet, pooling: str) -> list[tuple[str, nn.Module]]:
    _fold_bottleneck_bn(net)
    pool: nn.Module = net.maxpool
    if pooling == "avg":
        pool = _avg_pool_like(net.maxpool)
    return [
        ("conv1", net.conv1),
        ("relu", nn.Sequential(net.bn1, net.relu)),
        ("layer1", nn.Sequential(pool, net.layer1)),
        ("layer2", net.layer2),
        ("layer3", net.layer3),
        ("layer4", net.layer4),
    ]


def _vgg_stages(features: nn.Sequential, spec: BackboneSpec, pooling: str) -> list[tuple[str, nn.Module]]:
    stages: list[tuple[str, nn.Module]] = []
    pending: list[nn.Module] = []
    names = iter(spec.layers)
    for m in features:
        if isinstance(m, nn.MaxPool2d) and pooling == "avg":
            m = _avg_pool_like(m)
        if isinstance(m, nn.ReLU):
            m = nn.ReLU(inplace=False)  # tapped activations must not be overwritten
            pending.append(m)
            stages.append((next(names), nn.Sequential(*pending)))
            pending = []
        else:
            pending.append(m)
    # The final pool is never needed for a tap; drop it.
    return stages


def build_loss_network(name: str, weights: str | Path | None, *, pooling: str = "max",
                       trust: bool = False, device: str | torch.device = "cpu") -> LossNetwork:
    """Build a frozen loss network.

    Args:
        name: one of :data:`BACKBONES`.
        weights: checkpoint file; ``None`` gives random initialisation (a control for
            experiments, useless as a style loss), logged as a warning.
        pooling: ``"max"`` (as trained) or ``"avg"`` (Gatys et al. 2016).
        trust: allow full unpickling of the checkpoint (see :func:`load_checkpoint`).
        device: where the network lives.
    """
    spec = backbone_spec(name)
    if pooling not in ("max", "avg"):
        raise UserError(f"pooling must be 'max' or 'avg', not {pooling!r}")
    if weights is None:
        log.warning("%s: no weights given, using a RANDOMLY INITIALISED network", name)
    source = str(weights) if weights is not None else "random init"
    if spec.family == "resnet":
        net = models.resnet50(weights=None)
        if weights is not None:
            sd = extract_resnet50_state_dict(load_checkpoint(weights, trust=trust), source)
            load_state_dict_strict(net, sd, source)
        stages = _resnet_stages(net, pooling)
        mean, std, scale = IMAGENET_MEAN, IMAGENET_STD, 1.0
    else:
        arch = "alexnet" if name == "alexnet" else name[:5]  # vgg16 / vgg19
        net = getattr(models, arch)(weights=None)
        features = net.features
        if weights is not None:
            sd = extract_state_dict(load_checkpoint(weights, trust=trust), source)
            if any(k.startswith("features.") for k in sd):
                sd = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
            load_state_dict_strict(features, sd, source)
        stages = _vgg_stages(features, spec, pooling)
        if name in CAFFE_BACKBONES:
            mean, std, scale = CAFFE_MEAN_255, (1.0, 1.0, 1.0), 255.0
        else:
            mean, std, scale = IMAGENET_MEAN, IMAGENET_STD, 1.0
    return LossNetwork(spec, stages, mean, std, scale).to(device)
