"""``tune``: default loss weights for a backbone, chosen by measurement.

Short training runs, one per style:content ratio, all with the same budget (steps, image
size, batch, seed), are scored by the judges of :mod:`robust_style.evaluate` on held-out
photos. The chosen ratio is the **knee** of the trade-off between style distance (mean of
the style judges) and content distance (LPIPS): both axes are scaled to [0, 1] over the
sweep and the point nearest the ideal corner (0, 0) wins, the usual "knee" of a
two-objective Pareto front when no weighting between the objectives is given.

A **ratio** is the weighted style term over the weighted content term at step 0, measured
on one batch of the training photos through the untrained network (as ``auto`` weights
are balanced in training, :data:`~robust_style.transformer_net.config.AUTO_RATIOS`).
Ratios therefore mean the same on every backbone, whatever its activation scale; the
chosen ratio is turned back into absolute weights (content 1) for that backbone.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from robust_style.errors import UserError
from robust_style.evaluate.core import EvalConfig, EvalResult, evaluate

__all__ = ["TuneConfig", "TunePoint", "TuneResult", "choose_knee", "probe_scales", "tune"]

log = logging.getLogger(__name__)

STYLE_JUDGES = ("style_vgg19", "style_alexnet")


@dataclass(frozen=True)
class TuneConfig:
    """One sweep. ``ratios`` are initial style:content ratios (see the module docstring)."""

    style: Path
    content: Path
    photos: Path
    out: Path
    backbone: str
    backbone_weights: str | None = None
    ratios: tuple[float, ...] = (0.3, 1.0, 3.0, 9.0, 27.0)
    tv_ratio: float = 0.001
    steps: int = 300
    image_size: int = 128
    batch_size: int = 4
    lr: float = 1e-3
    eval_size: int = 128
    max_photos: int | None = None
    seed: int = 0
    workers: int = 0
    trust: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if len(self.ratios) < 3:
            raise UserError("give at least three --ratios: a knee needs a curve")
        if any(r <= 0 or not math.isfinite(r) for r in self.ratios):
            raise UserError("every ratio must be a finite number > 0")
        if self.tv_ratio < 0:
            raise UserError("--tv-ratio must be >= 0")
        if self.steps < 1 or self.batch_size < 1 or self.image_size < 32:
            raise UserError("--steps and --batch-size must be >= 1, --image-size >= 32")


@dataclass(frozen=True)
class TunePoint:
    """One run of the sweep and its mean judge scores on the held-out photos."""

    ratio: float
    content_weight: float
    style_weight: float
    tv_weight: float
    run: str
    style_vgg19: float
    style_alexnet: float
    content_lpips: float

    @property
    def style(self) -> float:
        values = [getattr(self, j) for j in STYLE_JUDGES if not math.isnan(getattr(self, j))]
        return sum(values) / len(values) if values else math.nan


@dataclass(frozen=True)
class TuneResult:
    config: TuneConfig
    arch: str
    points: tuple[TunePoint, ...]
    knee: int
    evaluation: EvalResult

    @property
    def chosen(self) -> TunePoint:
        return self.points[self.knee]

    @property
    def at_edge(self) -> bool:
        """True if the knee is the lowest or highest ratio swept: the trade-off may go on
        beyond the grid, so the sweep has not located a knee (extend ``--ratios``)."""
        ratios = [p.ratio for p in self.points]
        return self.chosen.ratio in (min(ratios), max(ratios))

    def edge_advice(self) -> str | None:
        """One line telling how to extend the grid, or None if the knee is inside it."""
        if not self.at_edge:
            return None
        ratios = [p.ratio for p in self.points]
        side = "below" if self.chosen.ratio == min(ratios) else "above"
        return (f"the knee is at the edge of the grid (ratio {self.chosen.ratio:g}): add ratios "
                f"{side} it to --ratios and run again (finished runs are reused)")


def choose_knee(style: list[float], content: list[float]) -> int:
    """Index of the point nearest (0, 0) once both axes are scaled to [0, 1]."""
    def scale(v: list[float]) -> list[float]:
        lo, hi = min(v), max(v)
        return [0.0 if hi == lo else (x - lo) / (hi - lo) for x in v]

    s, c = scale(style), scale(content)
    dist = [math.hypot(a, b) for a, b in zip(s, c, strict=True)]
    return dist.index(min(dist))


def probe_scales(cfg: TuneConfig) -> tuple[str, dict[str, float]]:
    """Unweighted content, style and TV terms at step 0 on one batch of training photos."""
    from robust_style.perceptual import LossWeights, PerceptualLoss, build_loss_network
    from robust_style.perceptual.backbones import backbone_spec
    from robust_style.perceptual.weights import resolve_backbone
    from robust_style.transformer_net import TransformerNet, TransformerNetConfig
    from robust_style.transformer_net.data import (
        ImageFolderDataset,
        find_images,
        load_image_tensor,
    )

    arch, weights = resolve_backbone(cfg.backbone, cfg.backbone_weights)
    spec = backbone_spec(arch)
    if spec.needs_weights and weights is None:
        raise UserError(f"backbone {arch} needs weights (--backbone-weights or a registry name)")
    files = find_images(cfg.content)
    data = ImageFolderDataset(files, cfg.image_size, min_images=1)
    torch.manual_seed(cfg.seed)
    x = torch.stack([data[i] for i in range(min(cfg.batch_size, len(data)))])
    net = build_loss_network(arch, weights, trust=cfg.trust)
    style = load_image_tensor(cfg.style, cfg.image_size)
    loss = PerceptualLoss(net, style, LossWeights(1.0, 1.0, 1.0), spec.style_layers,
                          spec.content_layer)
    with torch.no_grad():
        _, parts = loss(TransformerNet(TransformerNetConfig())(x), x)
    return arch, {k: max(float(v), 1e-12) for k, v in parts.items()}


#: Settings a reused run must share with the sweep, or the budgets would differ.
_SAME_BUDGET = {"backbone": "backbone", "max_steps": "steps", "image_size": "image_size", "batch_size": "batch_size",
                "lr": "lr", "seed": "seed"}


def _reused_weights(run: Path, cfg: TuneConfig) -> tuple[float, float, float]:
    """The weights a finished run was really trained with (from its ``config.json``, not
    re-derived: the step-0 probe can move in the last digits between versions), after
    checking that it had this sweep's budget."""
    try:
        done = json.loads((run / "config.json").read_text())
        weights = tuple(float(done[k]) for k in ("content_weight", "style_weight", "tv_weight"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{run} holds a finished run without a readable config.json ({exc}); "
                        "delete that folder to retrain it") from None
    differ = [f"--{flag.replace('_', '-')} {getattr(cfg, flag)} (run: {done.get(key)})"
              for key, flag in _SAME_BUDGET.items() if done.get(key) != getattr(cfg, flag)]
    if differ:
        raise UserError(f"{run} was trained with another budget: {', '.join(differ)}; "
                        "use a new --out or the same settings")
    log.info("reusing %s (weights %g, %g, %g)", run, *weights)
    return weights  # type: ignore[return-value]


def tune(cfg: TuneConfig) -> TuneResult:
    """Train one short run per ratio (reusing finished runs in ``out``), judge, choose."""
    from robust_style.transformer_net.config import TrainConfig
    from robust_style.transformer_net.train import train

    if not Path(cfg.style).is_file():
        raise UserError(f"artwork not found: {cfg.style}")
    arch, scale = probe_scales(cfg)
    log.info("step-0 terms of %s: content %.4g, style %.4g, tv %.4g", arch, scale["content"],
             scale["style"], scale["tv"])
    runs: list[Path] = []
    weights: list[tuple[float, float, float]] = []
    for ratio in cfg.ratios:
        run = Path(cfg.out) / "runs" / f"ratio-{ratio:g}"
        if (run / "style_model.pt").is_file():
            w = _reused_weights(run, cfg)
        else:
            w = (1.0, float(f"{ratio * scale['content'] / scale['style']:.4g}"),
                 float(f"{cfg.tv_ratio * scale['content'] / scale['tv']:.4g}"))
            log.info("training ratio %g: weights content %g, style %g, tv %g", ratio, *w)
            train(TrainConfig(style=str(cfg.style), content=str(cfg.content), out=str(run),
                              backbone=cfg.backbone, backbone_weights=cfg.backbone_weights,
                              trust_checkpoint=cfg.trust, name=f"ratio-{ratio:g}",
                              image_size=cfg.image_size, batch_size=cfg.batch_size, lr=cfg.lr,
                              max_steps=cfg.steps, content_weight=w[0], style_weight=w[1],
                              tv_weight=w[2], seed=cfg.seed, device="cpu", workers=cfg.workers,
                              checkpoint_interval=cfg.steps, sample_interval=0))
        runs.append(run)
        weights.append(w)
    ev = evaluate(EvalConfig(models=tuple(runs), artwork=cfg.style, photos=cfg.photos,
                             size=cfg.eval_size, judge_size=cfg.eval_size,
                             max_photos=cfg.max_photos, trust=cfg.trust, progress=cfg.progress))
    points = tuple(
        TunePoint(ratio, *w, str(run), ev.mean(label, "style_vgg19"),
                  ev.mean(label, "style_alexnet"), ev.mean(label, "content_lpips"))
        for ratio, w, run, label in zip(cfg.ratios, weights, runs, ev.models, strict=True))
    knee = choose_knee([p.style for p in points], [p.content_lpips for p in points])
    result = TuneResult(cfg, arch, points, knee, ev)
    if (advice := result.edge_advice()) is not None:
        log.warning("%s", advice)
    return result


def result_json(result: TuneResult) -> str:
    """The chosen weights and the whole sweep, as JSON."""
    c = result.chosen
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result.config).items()}
    return json.dumps({
        "backbone": result.arch, "chosen_ratio": c.ratio, "knee_at_grid_edge": result.at_edge,
        "defaults": {"content_weight": c.content_weight, "style_weight": c.style_weight,
                     "tv_weight": c.tv_weight},
        "points": [asdict(p) for p in result.points], "config": cfg,
    }, indent=2, default=str) + "\n"
