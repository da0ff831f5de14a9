"""Layer robustness R(f) of a loss network (Ilyas et al., Distill 2019).

In their comment on Nakano's "Adversarially robust neural style transfer" (Distill 2019,
discussion of "Adversarial examples are not bugs, they are features"), Ilyas et al.
measure how robust a layer ``f`` is as::

    R(f) = E_x1[ max_{‖x'−x1‖₂ ≤ ε} ‖f(x') − f(x1)‖₂ ] / E_{x1,x2}[ ‖f(x1) − f(x2)‖₂ ]

how far a small input perturbation can move the layer's output, relative to how far
apart two images are in that layer. Small R: the layer only "sees" what a human sees.

The inner maximum is found by projected gradient ascent in the L2 ball (Madry et al.
2018): a random start on the sphere of radius ε, steps along the L2-normalised gradient
of ``‖f(x+δ) − f(x)‖₂``, projection back onto the ball, and the pixel box [0, 1] (the
perturbed input stays a valid image, as in MadryLab's ``robustness`` ``L2Step``). The
best iterate per image is kept, so the estimate never falls below its random start. It
is a lower bound on the true maximum; more steps only raise it. The random start is
needed: at δ = 0 the gradient of the distance is undefined (zero for its square).

Pixel units: images are [0, 1] RGB, so ε = 1 changes, e.g., one 100-pixel patch by 0.058
per channel. The defaults (ε = 1, 10 steps, step size 2.5·ε/steps, the ratio
``robustness`` uses) are a compromise for CPU runs, not values from the paper.
The denominator averages over all pairs of distinct images.

A layer no perturbation can move (numerator 0) gets R = 0, also when every image maps
to the same output (0/0): it is perfectly robust, if useless.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from robust_style.errors import UserError

__all__ = [
    "LayerRobustness",
    "RobustnessConfig",
    "layer_robustness",
    "mean_pairwise_distance",
    "pgd_max_feature_change",
    "random_feature_change",
]

log = logging.getLogger(__name__)

#: A function from a [0, 1] image batch to one layer's activations.
FeatureFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RobustnessConfig:
    """PGD settings for the inner maximum of R(f).

    Attributes:
        eps: L2 radius of the perturbation, in [0, 1] pixel units, over the whole image.
        steps: gradient-ascent steps.
        step_size: L2 length of one step; ``None`` means ``2.5 * eps / steps`` (Madry et
            al. 2018; the default of MadryLab's ``robustness``), enough to cross the ball.
        random_start: start from a random point on the sphere of radius ``eps``.
        batch_size: images per PGD batch.
        seed: seed of the random starts.
    """

    eps: float = 1.0
    steps: int = 10
    step_size: float | None = None
    random_start: bool = True
    batch_size: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.eps < 0:
            raise UserError(f"eps must be >= 0, not {self.eps}")
        if self.steps < 0:
            raise UserError(f"steps must be >= 0, not {self.steps}")
        if self.step_size is not None and self.step_size <= 0:
            raise UserError(f"step size must be > 0, not {self.step_size}")
        if self.batch_size < 1:
            raise UserError(f"batch size must be >= 1, not {self.batch_size}")

    @property
    def alpha(self) -> float:
        if self.step_size is not None:
            return self.step_size
        return 2.5 * self.eps / max(self.steps, 1)


@dataclass(frozen=True)
class LayerRobustness:
    """R(f) of one layer, with its numerator and denominator."""

    layer: str
    max_change: float  # E_x1 max ‖f(x') − f(x1)‖₂ (PGD estimate)
    pair_distance: float  # E_{x1≠x2} ‖f(x1) − f(x2)‖₂
    n_images: int

    @property
    def r(self) -> float:
        if self.max_change == 0.0:
            return 0.0
        if self.pair_distance == 0.0:
            return float("inf")
        return self.max_change / self.pair_distance


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1)


def _random_directions(shape: torch.Size, gen: torch.Generator, device: torch.device
                       ) -> torch.Tensor:
    d = torch.randn(shape, generator=gen).to(device)
    return d / _flat_norm(d).clamp_min(1e-12).view(-1, 1, 1, 1)


def _project(x: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Onto the L2 ball of radius ``eps``, then so that ``x + delta`` stays in [0, 1]."""
    norms = _flat_norm(delta).view(-1, 1, 1, 1)
    delta = delta * torch.clamp(eps / norms.clamp_min(1e-12), max=1.0)
    return (x + delta).clamp(0.0, 1.0) - x


def pgd_max_feature_change(feature: FeatureFn, x: torch.Tensor, cfg: RobustnessConfig,
                           gen: torch.Generator | None = None) -> torch.Tensor:
    """Per image, the largest ``‖f(x+δ) − f(x)‖₂`` found with ``‖δ‖₂ ≤ ε`` (PGD, L2).

    Returns a ``(N,)`` tensor. ``feature`` may ignore its input (no gradient): then the
    ascent cannot move and the change is exactly what the random start gives.
    """
    gen = gen if gen is not None else torch.Generator().manual_seed(cfg.seed)
    x = x.detach()
    with torch.no_grad():
        clean = feature(x).detach()
    if cfg.eps == 0:
        return torch.zeros(x.shape[0])
    if cfg.random_start:
        delta = _project(x, _random_directions(x.shape, gen, x.device) * cfg.eps, cfg.eps)
    else:
        delta = torch.zeros_like(x)

    def change(d: torch.Tensor) -> torch.Tensor:
        return _flat_norm(feature(x + d) - clean)

    with torch.no_grad():
        best = change(delta).detach()
    for _ in range(cfg.steps):
        delta = delta.detach().requires_grad_(True)
        value = change(delta)
        if value.requires_grad:
            (grad,) = torch.autograd.grad(value.sum(), delta, allow_unused=True)
        else:
            grad = None
        if grad is None:
            break  # the layer ignores its input: nothing to ascend
        with torch.no_grad():
            g_norm = _flat_norm(grad).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta = _project(x, delta + cfg.alpha * grad / g_norm, cfg.eps)
            best = torch.maximum(best, change(delta))
    return best.detach().cpu()


def random_feature_change(feature: FeatureFn, x: torch.Tensor, eps: float, trials: int = 8,
                          seed: int = 0) -> torch.Tensor:
    """Per image, the largest change among ``trials`` random perturbations of norm ``eps``.

    The baseline PGD must beat: a random direction rarely points where a layer is
    sensitive.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        clean = feature(x)
        best = torch.zeros(x.shape[0])
        for _ in range(trials):
            delta = _project(x, _random_directions(x.shape, gen, x.device) * eps, eps)
            best = torch.maximum(best, _flat_norm(feature(x + delta) - clean).cpu())
    return best


def mean_pairwise_distance(features: torch.Tensor) -> float:
    """``E_{x1≠x2} ‖f(x1) − f(x2)‖₂`` over all unordered pairs of a feature batch."""
    n = features.shape[0]
    if n < 2:
        raise UserError("R(f) needs at least two images (its denominator compares pairs)")
    flat = features.flatten(1).double()
    dists = [(flat[i] - flat[j]).norm() for i, j in itertools.combinations(range(n), 2)]
    return float(torch.stack(dists).mean())


def layer_robustness(net: nn.Module, images: torch.Tensor, layers: Sequence[str],
                     cfg: RobustnessConfig, *, label: str = "", progress: bool = True
                     ) -> list[LayerRobustness]:
    """R(f) for each of ``layers`` of a loss network (``net(x, [layer]) -> {layer: act}``).

    ``images`` is an ``(N, 3, H, W)`` batch in [0, 1], N >= 2, on the network's device.
    """
    if images.shape[0] < 2:
        raise UserError("R(f) needs at least two images (its denominator compares pairs)")
    results: list[LayerRobustness] = []
    batches = list(torch.split(images, cfg.batch_size))
    bar = tqdm(total=len(layers) * len(batches), desc=f"R(f) {label}".strip(), unit="batch",
               disable=not progress, leave=False)
    try:
        for layer in layers:
            def feature(x: torch.Tensor, layer: str = layer) -> torch.Tensor:
                return net(x, [layer])[layer]

            gen = torch.Generator().manual_seed(cfg.seed)
            changes, clean = [], []
            for batch in batches:
                changes.append(pgd_max_feature_change(feature, batch, cfg, gen))
                with torch.no_grad():
                    clean.append(feature(batch).detach().cpu())
                bar.update(1)
            result = LayerRobustness(layer, float(torch.cat(changes).double().mean()),
                                     mean_pairwise_distance(torch.cat(clean)), images.shape[0])
            log.debug("%s %s: max change %.4g, pair distance %.4g, R %.4g", label, layer,
                      result.max_change, result.pair_distance, result.r)
            results.append(result)
    finally:
        bar.close()
    return results
