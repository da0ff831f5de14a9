"""Perceptual losses (Gatys et al. 2016; Johnson et al. 2016).

* :func:`gram_matrix`: ``G = F Fᵀ / (C·H·W)`` for features ``F`` of shape ``C × HW``,
  the normalisation of Johnson et al. 2016, so the loss is independent of image size.
* :func:`content_loss`: mean squared error between activations of one layer.
* :func:`style_loss`: weighted sum over layers of the MSE between Gram matrices.
* :func:`tv_loss`: total variation (mean absolute difference of neighbouring pixels),
  a smoothness prior (Mahendran & Vedaldi 2015; Johnson et al. 2016).

:class:`PerceptualLoss` bundles a loss network, a style target and the weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robust_style.perceptual.backbones import LossNetwork

__all__ = [
    "gram_matrix",
    "content_loss",
    "style_loss",
    "tv_loss",
    "LossWeights",
    "PerceptualLoss",
]


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Batched Gram matrix of ``(N, C, H, W)`` features, normalised by ``C·H·W``; float32.

    Channels-last (NHWC) features are read as ``N × HW × C`` without a copy. Under
    autocast the product runs in the autocast dtype (``bmm`` is on autocast's
    lower-precision list; accumulation is float32 in oneDNN and cuBLAS) and the result
    is returned in float32; outside autocast it is computed in the features' dtype.
    """
    n, c, h, w = features.shape
    if features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous():
        f = features.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view of NHWC memory
        g = torch.bmm(f.transpose(1, 2), f)
    else:
        f = features.reshape(n, c, h * w)
        g = torch.bmm(f, f.transpose(1, 2))
    return g.float() / (c * h * w)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(features.float(), target.float())


def style_loss(grams: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
               layer_weights: Mapping[str, float] | None = None) -> torch.Tensor:
    """Sum over layers of ``w_l · MSE(G_l, target_l)``; targets broadcast over the batch."""
    total = torch.zeros((), device=next(iter(grams.values())).device)
    for name, g in grams.items():
        t = targets[name]
        w = 1.0 if layer_weights is None else float(layer_weights.get(name, 1.0))
        total = total + w * F.mse_loss(g, t.expand_as(g))
    return total


def tv_loss(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation: mean |Δx| + mean |Δy|."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    return dx + dy


@dataclass(frozen=True)
class LossWeights:
    content: float
    style: float
    tv: float


class PerceptualLoss(nn.Module):
    """Content + style + TV loss of a loss network against one style image.

    ``forward(output, content)`` returns ``(total, parts)`` where ``parts`` holds the
    weighted ``content``, ``style`` and ``tv`` terms (detached floats are the caller's
    job). The style Gram targets are computed once at construction.
    """

    def __init__(self, net: LossNetwork, style_image: torch.Tensor, weights: LossWeights,
                 style_layers: Sequence[str], content_layer: str,
                 style_layer_weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        self.net = net
        self.weights = weights
        self.style_layers = tuple(style_layers)
        self.content_layer = content_layer
        self.style_layer_weights = dict(style_layer_weights or {})
        with torch.no_grad():
            feats = net(style_image, self.style_layers)
            for name in self.style_layers:
                self.register_buffer(f"gram_{name}", gram_matrix(feats[name]).detach())

    def style_targets(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, f"gram_{n}") for n in self.style_layers}

    def forward(self, output: torch.Tensor, content: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        layers = set(self.style_layers) | {self.content_layer}
        out_feats = self.net(output, layers)
        with torch.no_grad():
            target = self.net(content, [self.content_layer])[self.content_layer]
        c = self.weights.content * content_loss(out_feats[self.content_layer], target)
        grams = {n: gram_matrix(out_feats[n]) for n in self.style_layers}
        s = self.weights.style * style_loss(grams, self.style_targets(), self.style_layer_weights)
        t = self.weights.tv * tv_loss(output.float())
        return c + s + t, {"content": c, "style": s, "tv": t}
