"""The trained style model file: what training writes and export reads.

A style model (``RUN/style_model.pt``) and a training checkpoint
(``RUN/checkpoints/step-00001000.pt``) are both ``torch.save`` dicts holding only
tensors and plain Python values, so they load with ``weights_only=True``:

=================  ==============================================================
key                value
=================  ==============================================================
``format``         ``"robust-style/style-net/v1"``
``kind``           ``"style-model"`` or ``"checkpoint"``
``net_config``     :class:`TransformerNetConfig` as a dict
``state_dict``     the network's weights (float32, CPU)
``meta``           ``name``, ``backbone``, ``backbone_weights``, ``backbone_sha256``,
                   ``style_image``, ``style_image_sha256``, ``steps``, ``config``
                   (the full training config), ``package_version``, ``created``
=================  ==============================================================

A checkpoint also holds the training state (``optimizer``, ``scaler``, ``rng``,
``step``, ...), which only training reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from robust_style.errors import UserError
from robust_style.fileio import atomic_write
from robust_style.perceptual.checkpoint import load_checkpoint, load_state_dict_strict
from robust_style.transformer_net.model import TransformerNet, TransformerNetConfig

__all__ = [
    "ARTIFACT_FORMAT",
    "TrainedStyle",
    "atomic_torch_save",
    "load_style_model",
    "resolve_style_source",
    "save_style_model",
    "latest_checkpoint",
]

ARTIFACT_FORMAT = "robust-style/style-net/v1"
STYLE_MODEL_FILE = "style_model.pt"
CHECKPOINT_DIR = "checkpoints"


@dataclass
class TrainedStyle:
    """A loaded style network with what is known about how it was trained."""

    net: TransformerNet
    meta: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or (self.source.stem if self.source else "style"))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file in the same folder, fsync, then rename.

    A crash at any moment leaves either the old file or the new one, never half a file.
    """
    with atomic_write(path) as fh:
        torch.save(obj, fh)
    return Path(path)


def save_style_model(path: str | Path, net: TransformerNet, meta: dict[str, Any],
                     kind: str = "style-model", extra: dict[str, Any] | None = None) -> Path:
    payload: dict[str, Any] = {
        "format": ARTIFACT_FORMAT,
        "kind": kind,
        "net_config": net.config.to_dict(),
        "state_dict": {k: v.detach().float().cpu().contiguous()  # channels_last -> plain
                       for k, v in net.state_dict().items()},
        "meta": dict(meta),
    }
    if extra:
        payload.update(extra)
    return atomic_torch_save(payload, path)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = sorted(Path(run_dir, CHECKPOINT_DIR).glob("step-*.pt"))
    return ckpts[-1] if ckpts else None


def resolve_style_source(path: str | Path) -> Path:
    """A run folder -> its ``style_model.pt``, else its newest checkpoint; a file -> itself."""
    p = Path(path)
    if p.is_dir():
        final = p / STYLE_MODEL_FILE
        if final.is_file():
            return final
        ckpt = latest_checkpoint(p)
        if ckpt is None:
            raise UserError(f"{p} holds neither {STYLE_MODEL_FILE} nor checkpoints/step-*.pt; "
                            "is it a training run folder?")
        return ckpt
    if not p.exists():
        raise UserError(f"no such run folder or style model file: {p}")
    return p


def load_style_model(path: str | Path, *, trust: bool = False) -> TrainedStyle:
    """Load a style model or training checkpoint (or a run folder) safely."""
    src = resolve_style_source(path)
    obj = load_checkpoint(src, trust=trust)
    if not isinstance(obj, dict) or obj.get("format") != ARTIFACT_FORMAT:
        raise UserError(f"{src} is not a robust-style style model or training checkpoint "
                        f"(expected format {ARTIFACT_FORMAT!r})")
    net = TransformerNet(TransformerNetConfig.from_dict(obj.get("net_config", {})))
    load_state_dict_strict(net, obj["state_dict"], str(src))
    return TrainedStyle(net=net.eval(), meta=dict(obj.get("meta", {})), source=src)
