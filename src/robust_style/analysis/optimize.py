"""Per-image style transfer by optimisation (Gatys, Ecker & Bethge, CVPR 2016).

The pixels of one image are optimised so that its Gram matrices match the style image's
at the style layers and its activations match the content image's at the content layer:

    L(x) = w_c · MSE(f_c(x), f_c(content)) + w_s · Σ_l w_l · MSE(G_l(x), G_l(style))
           + w_tv · TV(x)

with the project's loss primitives (:mod:`robust_style.perceptual.losses`: Gram matrices
normalised by C·H·W). By default (``relative=True``) each content/style term is divided
by the mean square of its target, i.e. it is a relative error. Loss networks differ by
orders of magnitude in activation scale (the Caffe VGG-16 sees 0..255 input, a robust
ResNet's features are small), so absolute weights tuned for one backbone blow up or
vanish on another; relative terms let one set of default weights work for all of them,
which is what a fair backbone comparison needs (Nakano instead grid-searched the weights
per network). L-BFGS is the optimiser of Gatys et al. and of Nakano's robust-ResNet
experiments (Distill 2019); Adam is the alternative when L-BFGS stalls. The image is kept
in [0, 1] by clamping after every update. Single-layer mode (one style layer) is the layer
comparison of the Ilyas et al. comment: the style loss comes from that layer only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from robust_style.errors import UserError
from robust_style.perceptual import LossNetwork, content_loss, gram_matrix, style_loss, tv_loss

__all__ = ["GatysConfig", "GatysResult", "optimize_image"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GatysConfig:
    """Settings of one optimisation run.

    Attributes:
        style_layers: layers whose Gram matrices are matched (one layer = single-layer mode).
        content_layer: layer whose activations are matched; ``None`` = no content term.
        content_weight, style_weight, tv_weight: the loss weights ``w_c``, ``w_s``, ``w_tv``.
        relative: divide each content/style term by the mean square of its target.
        style_layer_weights: optional per-layer ``w_l`` (default 1).
        steps: optimiser iterations (one L-BFGS iteration may evaluate the loss more than
            once, for its line search).
        optimizer: ``"lbfgs"`` or ``"adam"``.
        lr: learning rate; ``None`` = 1.0 for L-BFGS (with a strong-Wolfe line search the
            step length is found anyway) and 0.02 for Adam (pixels live in [0, 1]).
        init: ``"content"`` (start from the content image) or ``"noise"`` (uniform noise).
        seed: seed of the noise initialisation.
    """

    style_layers: tuple[str, ...]
    content_layer: str | None
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 0.0
    relative: bool = True
    style_layer_weights: Mapping[str, float] = field(default_factory=dict)
    steps: int = 100
    optimizer: str = "lbfgs"
    lr: float | None = None
    init: str = "content"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.style_layers:
            raise UserError("give at least one style layer")
        if self.optimizer not in ("lbfgs", "adam"):
            raise UserError(f"optimizer must be 'lbfgs' or 'adam', not {self.optimizer!r}")
        if self.init not in ("content", "noise"):
            raise UserError(f"init must be 'content' or 'noise', not {self.init!r}")
        if self.steps < 1:
            raise UserError(f"steps must be >= 1, not {self.steps}")
        for name, w in (("content", self.content_weight), ("style", self.style_weight),
                        ("tv", self.tv_weight)):
            if w < 0 or not math.isfinite(w):
                raise UserError(f"{name} weight must be a finite number >= 0, not {w}")

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1.0 if self.optimizer == "lbfgs" else 0.02


@dataclass(frozen=True)
class GatysResult:
    """The optimised image ``(1, 3, H, W)`` in [0, 1] and its losses.

    ``losses[k]`` is the loss the optimiser evaluated in step ``k + 1`` (before that
    step's update); ``initial_loss`` and ``final_loss`` are of the start and end images.
    """

    image: torch.Tensor
    losses: tuple[float, ...]
    initial_loss: float
    final_loss: float


class _Objective:
    """The Gatys loss against fixed targets, computed from one forward pass."""

    def __init__(self, net: LossNetwork, cfg: GatysConfig, content: torch.Tensor,
                 style: torch.Tensor) -> None:
        self.net, self.cfg = net, cfg
        content_layers = {cfg.content_layer} if cfg.content_layer is not None else set()
        unknown = (set(cfg.style_layers) | content_layers) - set(net.layers)
        if unknown:
            raise UserError(f"unknown layer(s) {', '.join(sorted(map(str, unknown)))} for "
                            f"{net.spec.name}; choose from {', '.join(net.layers)}")
        self.layers = set(cfg.style_layers) | content_layers
        with torch.no_grad():
            feats = net(style, cfg.style_layers)
            self.grams = {n: gram_matrix(feats[n]).detach() for n in cfg.style_layers}
            self.content_target = (net(content, [cfg.content_layer])[cfg.content_layer].detach()
                                   if cfg.content_layer else None)
        # Scales of the terms: 1 (absolute) or the mean square of each target (relative).
        self.layer_weights = {n: float(cfg.style_layer_weights.get(n, 1.0)) for n in cfg.style_layers}
        self.content_scale = 1.0
        if cfg.relative:
            for n, g in self.grams.items():
                self.layer_weights[n] /= max(float(g.pow(2).mean()), 1e-30)
            if self.content_target is not None:
                self.content_scale = 1.0 / max(float(self.content_target.pow(2).mean()), 1e-30)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        feats = self.net(x, self.layers)
        total = torch.zeros((), device=x.device)
        parts: dict[str, float] = {}
        if self.content_target is not None and cfg.content_layer is not None:
            c = (cfg.content_weight * self.content_scale
                 * content_loss(feats[cfg.content_layer], self.content_target))
            total, parts["content"] = total + c, float(c.detach())
        grams = {n: gram_matrix(feats[n]) for n in cfg.style_layers}
        s = cfg.style_weight * style_loss(grams, self.grams, self.layer_weights)
        total, parts["style"] = total + s, float(s.detach())
        if cfg.tv_weight:
            t = cfg.tv_weight * tv_loss(x)
            total, parts["tv"] = total + t, float(t.detach())
        return total, parts


def optimize_image(net: LossNetwork, content: torch.Tensor, style: torch.Tensor,
                   cfg: GatysConfig, *,
                   on_step: Callable[[int, torch.Tensor, float], None] | None = None,
                   progress: bool = True) -> GatysResult:
    """Optimise an image (Gatys et al. 2016) and return it with its loss curve.

    Args:
        net: a frozen loss network.
        content: ``(1, 3, H, W)`` in [0, 1]; the output has its size.
        style: ``(1, 3, H', W')`` in [0, 1] (any size: Gram matrices are size-free).
        cfg: the run's settings.
        on_step: called as ``on_step(step, image, loss)`` after every step (1-based), e.g.
            to save intermediate images.
        progress: show a tqdm bar.
    """
    device = content.device
    objective = _Objective(net, cfg, content, style)
    if cfg.init == "content":
        start = content.detach().clone()
    else:
        gen = torch.Generator().manual_seed(cfg.seed)
        start = torch.rand(content.shape, generator=gen).to(device)
    image = start.requires_grad_(True)
    with torch.no_grad():
        initial = float(objective(image)[0])
    log.info("initial loss %.4g", initial)

    if cfg.optimizer == "lbfgs":
        # One L-BFGS iteration per step() call (so progress, --save-every and the clamp to
        # [0, 1] happen per iteration; the curvature history persists in the optimizer's
        # state). max_eval must be set: its default (max_iter * 5 // 4 = 1) would leave the
        # strong-Wolfe line search no evaluations to back off an overshooting first trial.
        opt: torch.optim.Optimizer = torch.optim.LBFGS(
            [image], lr=cfg.learning_rate, max_iter=1, max_eval=20, history_size=50,
            line_search_fn="strong_wolfe")
    else:
        opt = torch.optim.Adam([image], lr=cfg.learning_rate)

    last: dict[str, float] = {}

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss, parts = objective(image)
        loss.backward()
        last.update(parts, total=float(loss.detach()))
        return loss

    losses: list[float] = []
    bar = tqdm(range(1, cfg.steps + 1), desc=f"optimize ({cfg.optimizer})", unit="step",
               disable=not progress, leave=False)
    for step in bar:
        # the loss at the start of this step (torch's stub types the closure as -> float)
        loss = float(opt.step(closure).detach())  # type: ignore[arg-type, attr-defined]
        with torch.no_grad():
            image.clamp_(0.0, 1.0)
        if not math.isfinite(loss):
            raise UserError(f"the loss became {loss} at step {step}; lower --lr or the weights")
        losses.append(loss)
        bar.set_postfix({k: f"{v:.3g}" for k, v in last.items()})
        if on_step is not None:
            on_step(step, image.detach(), loss)
    bar.close()
    with torch.no_grad():
        final = float(objective(image)[0])
    log.info("loss %.4g -> %.4g in %d steps", initial, final, cfg.steps)
    return GatysResult(image.detach().clone(), tuple(losses), initial, final)
