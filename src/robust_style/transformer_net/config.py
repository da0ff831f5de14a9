"""Training configuration and per-backbone default loss weights."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from robust_style.errors import UserError

__all__ = ["TrainConfig", "DEFAULT_LOSS_WEIGHTS", "AUTO", "PRECISIONS"]

#: Marker for loss weights balanced from the first batch (see ``train.balance_weights``).
AUTO = "auto"
#: ``auto``: bf16 where the hardware computes it natively, else fp32 (runtime.resolve_precision).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

#: Default (content, style, TV) weights per backbone. Gram matrices are normalised by
#: C·H·W (Johnson et al. 2016), images are in [0, 1].
#:
#: * VGG-16 (both layouts): tuned on real photos here (docs/training.md). The starting
#:   point was pytorch/examples' ``fast_neural_style`` balance (content 1e5, style 1e10 on
#:   torchvision VGG-16 features), carried over to the Caffe VGG-16's 0..255 input scale
#:   (features ~57x larger: content MSE ~3.3e3x, Gram MSE ~1.1e7x larger), i.e. style ~30.
#:   A run at style 50 lost the photo's content within 200 steps; at 12.5 (the same run
#:   continued with content 4, style 50) the content came back and the style stayed.
#:   At step 0 on real photos the weighted style term is then ~18x the content term.
#: * ResNet-50 (robust and standard), VGG-19: PROVISIONAL. No robust ImageNet checkpoint
#:   was available when they were chosen, so they are ``auto``: at step 0 the weights are
#:   scaled so the three terms start in the same proportions as the tuned VGG-16
#:   defaults do (``AUTO_RATIOS``), then frozen and recorded in the run's config.
DEFAULT_LOSS_WEIGHTS: dict[str, tuple[float | str, float | str, float | str]] = {
    "vgg16-caffe": (1.0, 12.5, 2.5e3),
    "vgg16": (1.0, 4.0e4, 0.75),
    "vgg19": (AUTO, AUTO, AUTO),
    "vgg19-caffe": (AUTO, AUTO, AUTO),
    "alexnet": (AUTO, AUTO, AUTO),
    "resnet50": (AUTO, AUTO, AUTO),
    "robust-resnet50": (AUTO, AUTO, AUTO),
}

#: Initial (content, style, TV) contributions targeted by ``auto`` weights, relative to
#: the content term; measured from the tuned VGG-16 defaults (docs/training.md).
AUTO_RATIOS = (1.0, 18.0, 0.001)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; stored in every checkpoint."""

    style: str
    content: str
    out: str
    backbone: str = "robust-resnet50"
    backbone_weights: str | None = None
    trust_checkpoint: bool = False
    name: str = ""
    image_size: int = 256
    style_size: int | None = None
    batch_size: int = 4
    lr: float = 1e-3
    epochs: int = 2
    max_steps: int | None = None
    max_minutes: float | None = None
    content_weight: float | str | None = None
    style_weight: float | str | None = None
    tv_weight: float | str | None = None
    style_layers: tuple[str, ...] | None = None
    content_layer: str | None = None
    pooling: str = "max"
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    workers: int = 2
    checkpoint_interval: int = 500
    sample_interval: int = 200
    log_interval: int = 10
    keep_checkpoints: int = 3
    sample_image: str | None = None
    net_channels: tuple[int, int, int] = (32, 64, 128)
    net_residual: int = 5
    compile: str = "auto"
    channels_last: bool = True
    temporal_weight: float = 0.0
    init_from: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.image_size >= 16, f"--image-size must be >= 16, got {self.image_size}"),
            (self.style_size is None or self.style_size >= 16,
             f"--style-size must be >= 16, got {self.style_size}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.max_steps is None or self.max_steps >= 1,
             f"--max-steps must be >= 1, got {self.max_steps}"),
            (self.max_minutes is None or self.max_minutes > 0,
             f"--max-minutes must be > 0, got {self.max_minutes}"),
            (self.pooling in ("max", "avg"), f"--pooling must be max or avg, got {self.pooling}"),
            (self.precision in PRECISIONS,
             f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision}"),
            (self.compile in ("auto", "on", "off"),
             f"--compile must be auto, on or off, got {self.compile}"),
            (self.workers >= 0, f"--workers must be >= 0, got {self.workers}"),
            (self.checkpoint_interval >= 1, "--checkpoint-interval must be >= 1"),
            (self.sample_interval >= 0, "--sample-interval must be >= 0 (0 disables samples)"),
            (self.log_interval >= 1, "--log-interval must be >= 1"),
            (self.keep_checkpoints >= 1, "--keep-checkpoints must be >= 1"),
            (self.temporal_weight >= 0, "--temporal-weight must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        for name in ("content_weight", "style_weight", "tv_weight"):
            v = getattr(self, name)
            if v is not None and v != AUTO and (not isinstance(v, (int, float)) or v < 0):
                raise UserError(f"--{name.replace('_', '-')} must be a number >= 0 or 'auto'")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("style_layers", "net_channels"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)
