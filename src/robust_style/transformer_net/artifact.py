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

A multi-style network (``train --style A --style B ...``, Dumoulin et al. 2017) stores
its instance norms as ``(styles, C)`` stacks under the usual keys and its style names in
``meta["styles"]``, in row order; loading one picks a style or a blend (``mix``) and
gives an ordinary single-style network.

A checkpoint also holds the training state (``optimizer``, ``scaler``, ``rng``,
``step``, ...), which only training reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from robust_style.errors import UserError
from robust_style.fileio import atomic_write
from robust_style.perceptual.checkpoint import load_checkpoint, load_state_dict_strict
from robust_style.transformer_net.model import (
    TransformerNet,
    TransformerNetConfig,
    make_multistyle,
    single_style,
)

__all__ = [
    "ARTIFACT_FORMAT",
    "TrainedStyle",
    "atomic_torch_save",
    "load_style_model",
    "resolve_style_source",
    "save_style_model",
    "latest_checkpoint",
    "parse_blend",
    "style_mix",
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


def load_style_model(path: str | Path, *, trust: bool = False,
                     mix: Mapping[str, float] | Literal["mean"] | None = None) -> TrainedStyle:
    """Load a style model or training checkpoint (or a run folder) safely.

    ``mix`` chooses what a multi-style file gives: ``{name: 1}`` one style,
    ``{a: 0.7, b: 0.3}`` a blend, ``"mean"`` the mean of all; a multi-style file needs
    one. A single-style file accepts ``{its name: 1}`` (and ``"mean"``).
    """
    src = resolve_style_source(path)
    obj = load_checkpoint(src, trust=trust)
    if not isinstance(obj, dict) or obj.get("format") != ARTIFACT_FORMAT:
        raise UserError(f"{src} is not a robust-style style model or training checkpoint "
                        f"(expected format {ARTIFACT_FORMAT!r})")
    meta = dict(obj.get("meta", {}))
    net = TransformerNet(TransformerNetConfig.from_dict(obj.get("net_config", {})))
    names = [str(n) for n in meta.get("styles") or []]
    if len(names) > 1:
        make_multistyle(net, len(names))
    load_state_dict_strict(net, obj["state_dict"], str(src))
    if len(names) > 1 or mix is not None:
        own = names or [str(meta.get("name") or src.stem)]
        weights = style_mix(mix, own, src)
        if len(names) > 1:
            net = single_style(net, weights)
        picked = [i for i, w in enumerate(weights.tolist()) if w > 0]
        if len(picked) == 1 and len(names) > 1:  # one style: its own name and artwork
            i = picked[0]
            meta["name"] = names[i]
            images = list(meta.get("style_images") or [])
            shas = str(meta.get("style_image_sha256") or "").split(",")
            if len(images) == len(names) and len(shas) == len(names):
                meta["style_image"], meta["style_image_sha256"] = images[i], shas[i]
        meta["mix"] = {n: float(w) for n, w in zip(own, weights.tolist(), strict=True) if w > 0}
    return TrainedStyle(net=net.eval(), meta=meta, source=src)


def style_mix(mix: Mapping[str, float] | Literal["mean"] | None, names: list[str],
              src: Path | str) -> torch.Tensor:
    """One weight per style of ``names`` (in order), or a one-line error: a multi-style
    file needs a choice; names must be the file's; a blend's weights are in [0, 1] and
    sum to 1 (Dumoulin et al. 2017 interpolate convexly)."""
    listed = ", ".join(names)
    if mix is None:
        raise UserError(f"{src} holds {len(names)} styles ({listed}); choose one with "
                        "--style NAME (or a --blend NAME:W,...)")
    if mix == "mean":
        return torch.full((len(names),), 1.0 / len(names))
    unknown = [n for n in mix if n not in names]
    if unknown:
        raise UserError(f"unknown style {unknown[0]!r} in {src}; it holds: {listed}")
    if any(not 0.0 <= w <= 1.0 for w in mix.values()):
        raise UserError("blend weights must each be between 0 and 1, got "
                        + ", ".join(f"{n}:{w:g}" for n, w in mix.items()))
    total = sum(mix.values())
    if abs(total - 1.0) > 1e-6:
        raise UserError(f"blend weights must sum to 1, got {total:g} "
                        f"({', '.join(f'{n}:{w:g}' for n, w in mix.items())})")
    return torch.tensor([float(mix.get(n, 0.0)) for n in names])


def parse_blend(text: str) -> dict[str, float]:
    """``"a:0.7,b:0.3"`` -> ``{"a": 0.7, "b": 0.3}``, or a one-line error."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, weight = part.rpartition(":")
        try:
            value = float(weight)
        except ValueError:
            value = float("nan")
        if not sep or not name or value != value:
            raise UserError(f"--blend: expected NAME:WEIGHT,NAME:WEIGHT, got {part!r}")
        if name in out:
            raise UserError(f"--blend names {name!r} twice")
        out[name] = value
    if len(out) < 2:
        raise UserError("--blend needs at least two styles, e.g. a:0.7,b:0.3")
    return out
