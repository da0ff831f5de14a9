"""Loss weights: per-backbone defaults, and ``auto`` weights balanced on the first batch.

``auto`` (config.AUTO_RATIOS): on the first batch the content, style and TV terms are
measured with unit weights and the weights chosen so the terms start in the proportions
the tuned VGG-16 defaults give; rank 0's numbers go to every rank, then the weights are
frozen and written into the run's config (a resumed run reuses them).
"""

from __future__ import annotations

import logging

import torch

from robust_style.perceptual import LossWeights, PerceptualLoss
from robust_style.transformer_net.config import (
    AUTO,
    AUTO_RATIOS,
    DEFAULT_LOSS_WEIGHTS,
    TrainConfig,
)
from robust_style.transformer_net.runtime import DistContext, broadcast_from_main

__all__ = ["balance_weights", "loss_weights", "needs_balancing", "resolve_auto_weights",
           "with_default_weights"]

log = logging.getLogger(__name__)

_KEYS = ("content_weight", "style_weight", "tv_weight")


def with_default_weights(config: TrainConfig, arch: str) -> TrainConfig:
    """Weights left unset take the backbone's defaults (numbers or ``auto``)."""
    changes = {key: default for key, default in zip(_KEYS, DEFAULT_LOSS_WEIGHTS[arch], strict=True)
               if getattr(config, key) is None}
    return config.replace(**changes) if changes else config


def needs_balancing(config: TrainConfig) -> bool:
    return AUTO in (config.content_weight, config.style_weight, config.tv_weight)


def loss_weights(config: TrainConfig) -> LossWeights:
    """The config's weights; ``auto`` ones are 1 until :func:`balance_weights` runs."""
    c, s, t = (1.0 if getattr(config, k) == AUTO else float(getattr(config, k)) for k in _KEYS)
    return LossWeights(c, s, t)


def resolve_auto_weights(config: TrainConfig, unit_parts: dict[str, float]) -> TrainConfig:
    """Replace ``auto`` weights by numbers balanced from unit-weight loss terms."""
    c0, s0, t0 = (max(unit_parts[k], 1e-12) for k in ("content", "style", "tv"))
    rc, rs, rt = AUTO_RATIOS
    balanced = {"content_weight": rc / c0, "style_weight": rs / s0, "tv_weight": rt / t0}
    changes = {k: float(f"{v:.4g}") for k, v in balanced.items() if getattr(config, k) == AUTO}
    log.info("auto loss weights from the first batch: %s", changes)
    return config.replace(**changes)


def balance_weights(config: TrainConfig, criterion: PerceptualLoss, net: torch.nn.Module,
                    x: torch.Tensor, dctx: DistContext, device: torch.device) -> TrainConfig:
    """Measure the unweighted terms on batch ``x`` (rank 0's count), resolve ``auto``
    weights, and set them on ``criterion`` (whose style targets are reused, not rebuilt)."""
    saved = criterion.weights
    criterion.weights = LossWeights(1.0, 1.0, 1.0)
    try:
        with torch.no_grad():
            _, parts = criterion(net(x).float(), x)
    finally:
        criterion.weights = saved
    values = broadcast_from_main([float(parts[k]) for k in ("content", "style", "tv")],
                                 dctx, device)
    config = resolve_auto_weights(config, dict(zip(("content", "style", "tv"), values,
                                                   strict=True)))
    criterion.weights = loss_weights(config)
    return config
