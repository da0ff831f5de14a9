"""Perceptual loss networks (robust ResNet-50, ResNet-50, VGG-16/19), layer taps,
safe checkpoint loading, and Gram/content/style/TV losses."""

from robust_style.perceptual.backbones import (
    BACKBONES,
    BackboneSpec,
    LossNetwork,
    backbone_spec,
    build_loss_network,
)
from robust_style.perceptual.checkpoint import (
    extract_resnet50_state_dict,
    extract_state_dict,
    load_checkpoint,
    load_state_dict_strict,
)
from robust_style.perceptual.losses import (
    LossWeights,
    PerceptualLoss,
    content_loss,
    gram_matrix,
    style_loss,
    tv_loss,
)

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "LossNetwork",
    "LossWeights",
    "PerceptualLoss",
    "backbone_spec",
    "build_loss_network",
    "content_loss",
    "extract_resnet50_state_dict",
    "extract_state_dict",
    "gram_matrix",
    "load_checkpoint",
    "load_state_dict_strict",
    "style_loss",
    "tv_loss",
]
