"""A temporal-consistency regulariser that needs no optical flow: compound regularisation.

Wenjing Wang, Jizheng Xu, Li Zhang, Yue Wang, Jiaying Liu, "Consistent Video Style
Transfer via Compound Regularization", AAAI 2020. A feed-forward style network ``T`` flickers
because small changes of its input (motion, sensor noise, compression) cause large,
incoherent changes of its output. The compound regulariser trains ``T`` on still images
only: each step it also stylises a randomly *warped* and *noise-perturbed* copy of the
batch and penalises

    || T(W(x) + Δ) - W(T(x)) ||²      (over pixels W maps inside the frame)

where ``W`` is a random small motion and ``Δ`` Gaussian noise. Stylising then commutes
with motion (what a temporally stable video needs) and ignores noise, with no
optical-flow data set and no video in training.

Choices here (ours, not the paper's exact motion model and noise level): ``W``
is a random affine map (translation up to ``max_shift`` of the side, rotation up to
``max_rotate`` degrees, zoom within ``1 ± max_zoom``) applied with bilinear sampling, which
is the motion of a panning, rotating, zooming camera; ``Δ`` has a per-sample standard
deviation drawn uniformly in ``[0, noise_std]``. Both sides of the difference keep their
gradients, as in the paper. Pixels that ``W`` brings in from outside the frame are left
out of the mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robust_style.transformer_net.step import StepInputs

__all__ = ["TemporalConfig", "TemporalTerm", "random_affine", "warp", "temporal_loss"]


@dataclass(frozen=True)
class TemporalConfig:
    """The random motion and noise of :func:`temporal_loss` (see the module doc)."""

    weight: float
    max_shift: float = 0.03
    max_rotate: float = 2.0
    max_zoom: float = 0.03
    noise_std: float = 0.02

    def __post_init__(self) -> None:
        if not (self.weight >= 0 and math.isfinite(self.weight)):
            raise ValueError(f"temporal weight must be a finite number >= 0, got {self.weight}")


def random_affine(n: int, cfg: TemporalConfig, *, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` random ``2x3`` affine matrices for :func:`torch.nn.functional.affine_grid`.

    They map output coordinates to input coordinates in the normalised [-1, 1] frame.
    """
    u = torch.rand(n, 4, generator=generator) * 2 - 1  # uniform in [-1, 1]
    angle = torch.deg2rad(u[:, 0] * cfg.max_rotate)
    scale = 1.0 + u[:, 1] * cfg.max_zoom
    tx, ty = u[:, 2] * cfg.max_shift * 2, u[:, 3] * cfg.max_shift * 2  # [-1,1] spans 2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    return theta.to(device)


def warp(x: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (NCHW) moved by ``theta``; and the mask (N1HW) of pixels that came from inside."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    ones = torch.ones_like(x[:, :1])
    inside = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False) > 0.999
    return moved, inside.to(x.dtype)


def temporal_loss(net: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TemporalConfig, *,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """The unweighted compound regulariser: mean ``(T(W(x) + Δ) - W(y))²`` inside the frame.

    ``x`` is the batch (NCHW in [0, 1]) and ``y = T(x)`` its stylisation (already computed
    for the perceptual loss, so one extra forward pass per step).
    """
    n = x.shape[0]
    theta = random_affine(n, cfg, generator=generator, device=x.device)
    x_moved, inside = warp(x, theta)
    sigma = torch.rand(n, 1, 1, 1, generator=generator).to(x.device, x.dtype) * cfg.noise_std
    noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype) * sigma
    x_moved = (x_moved + noise).clamp(0.0, 1.0)
    y_of_moved = net(x_moved)
    y_moved, _ = warp(y, theta)
    diff = (y_of_moved.float() - y_moved.float()) ** 2 * inside
    return diff.sum() / (inside.sum() * x.shape[1]).clamp_min(1.0)


class TemporalTerm:
    """:func:`temporal_loss` times ``cfg.weight`` as an extra training loss term."""

    name = "temporal"

    def __init__(self, cfg: TemporalConfig) -> None:
        self.cfg = cfg

    def __call__(self, inputs: StepInputs) -> torch.Tensor:
        return self.cfg.weight * temporal_loss(inputs.model, inputs.x, inputs.y, self.cfg)
