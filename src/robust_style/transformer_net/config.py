"""Training configuration and per-backbone default loss weights."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from robust_style.errors import UserError
from robust_style.transformer_net.arch import TransformerNetConfig, arch_preset

__all__ = ["TrainConfig", "DEFAULT_LOSS_WEIGHTS", "AUTO", "PRECISIONS"]

#: Marker for loss weights balanced from the first batch (see ``train.balance_weights``).
AUTO = "auto"
#: ``auto``: bf16 where the hardware computes it natively, else fp32 (runtime.resolve_precision).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

#: Default (content, style, TV) weights per backbone. Gram matrices are normalised by
#: C·H·W (Johnson et al. 2016), images are in [0, 1].
#:
#: Chosen by measurement with ``robust-style tune`` (docs/quality-experiments.md): for each
#: backbone with real ImageNet weights here, one 300-step run (128 px, batch 4, seed 0, The
#: Scream, 8 real training photos) per style:content ratio, judged on 4 held-out photos by
#: the Oxford VGG-19 and AlexNet Gram distances and LPIPS; the default is the run at the
#: knee of that trade-off, with the weights it was trained with:
#:
#: * ``vgg16-caffe``: knee at ratio 3 (of 1, 3, 5.2, 9, 27, 81).
#: * ``vgg19-caffe``: knee at ratio 9 (of 1 … 81). Its Gatys layers are the most robust
#:   (R(f)) and keep the photo's content at a higher style weight.
#: * ``alexnet``: knee at ratio 1 (of 0.1 … 81); its stride-4 first layer leaves a grid
#:   pattern at every ratio, so it is a judge more than a loss network.
#: * ``vgg16`` (torchvision layout): no real weights here to sweep; the ``vgg16-caffe``
#:   knee carried over to torchvision's input scale (×3.2e3 on style, ×3e-4 on TV).
#: * ResNet-50 (robust and standard), torchvision VGG-19: no real weights here, so
#:   ``auto`` at the ``vgg16-caffe`` knee (``AUTO_RATIOS``). The knees above differ by
#:   backbone (1, 3, 9), so a user with the robust checkpoint should measure its own:
#:   ``robust-style tune --backbone robust-resnet50-l2-3 ...`` (docs/training.md).
DEFAULT_LOSS_WEIGHTS: dict[str, tuple[float | str, float | str, float | str]] = {
    "vgg16-caffe": (1.0, 1.688, 3.554e3),
    "vgg16": (1.0, 5.4e3, 1.07),
    "vgg19": (AUTO, AUTO, AUTO),
    "vgg19-caffe": (1.0, 14.15, 1.114e4),
    "alexnet": (1.0, 2.249e4, 0.1097),
    "resnet50": (AUTO, AUTO, AUTO),
    "robust-resnet50": (AUTO, AUTO, AUTO),
}

#: Initial (content, style, TV) contributions targeted by ``auto`` weights, relative to
#: the content term: the measured ``vgg16-caffe`` knee (ratio 3) and ``tune``'s TV ratio.
AUTO_RATIOS = (1.0, 3.0, 0.001)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; stored in every checkpoint.

    ``style`` is one artwork, or several for one multi-style network (conditional
    instance norm, Dumoulin et al. 2017). ``norms_only`` trains only the instance norms'
    scales and shifts of the ``init_from`` network (``robust-style adapt``).
    """

    style: str | tuple[str, ...]
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
    arch: str = "johnson"
    net_channels: tuple[int, int, int] | None = None
    net_residual: int | None = None
    compile: str = "auto"
    channels_last: bool = True
    temporal_weight: float = 0.0
    init_from: str | None = None
    norms_only: bool = False

    @property
    def style_images(self) -> tuple[str, ...]:
        """The artwork(s), one per style, in the network's style order."""
        return (self.style,) if isinstance(self.style, str) else tuple(self.style)

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
            (not self.norms_only or bool(self.init_from),
             "training only the normalisation parameters needs a base network (adapt BASE)"),
            (not self.norms_only or len(self.style_images) == 1,
             "adapt learns one artwork at a time: give one --style"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        self.net_config()  # an unknown --arch is a one-line error here
        for name in ("content_weight", "style_weight", "tv_weight"):
            v = getattr(self, name)
            if v is not None and v != AUTO and (not isinstance(v, (int, float)) or v < 0):
                raise UserError(f"--{name.replace('_', '-')} must be a number >= 0 or 'auto'")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def net_config(self) -> TransformerNetConfig:
        """The network to train: the ``arch`` preset, with ``net_channels`` and
        ``net_residual`` replacing its widths and block count where given (a config
        saved before presets existed has both, and no ``arch``: Johnson's network)."""
        net = arch_preset(self.arch)
        if self.net_channels is not None:
            net = net.replace(channels=tuple(self.net_channels))
        if self.net_residual is not None:
            net = net.replace(num_residual=self.net_residual)
        return net

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("style_layers", "net_channels", "style"):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str)
