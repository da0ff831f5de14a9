"""The reference training step: the loop of pytorch/examples' ``fast_neural_style``.

Written here from its description, not copied (pytorch/examples,
``fast_neural_style/neural_style/neural_style.py``, BSD-3): eager fp32; a torchvision
VGG-16 ``features`` network cut into four slices ending at relu1_2, relu2_2, relu3_3 and
relu4_3, run on the output **and** on the content batch with autograd on for both (the
content features are built into the graph too); content loss ``MSELoss`` at relu2_2;
style loss ``MSELoss`` between Gram matrices (normalised by C·H·W) and the artwork's,
summed over the four slices; no TV term; Adam; the content and style losses read back
with ``.item()`` every step (two host syncs).

Two things differ from that script, so that the comparison is about the loop:

* the transformation network is this project's :class:`TransformerNet` (the same
  architecture: reflection-padded convolutions, instance norm, five residual blocks,
  nearest-neighbour upsampling), with [0, 1] images in and out;
* the VGG-16 input normalisation is the one its weights expect (torchvision: ImageNet
  mean/std on [0, 1]; the original Caffe VGG-16: ``x·255 − mean``), and the loss weights
  are given by the caller (the script's 1e5 / 1e10 are for torchvision's scale).

Used by ``bench_train.py`` (speed per step) and ``time_to_quality.py`` (quality per
wall-clock budget).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models

from robust_style.perceptual.backbones import CAFFE_MEAN_255, IMAGENET_MEAN, IMAGENET_STD
from robust_style.perceptual.checkpoint import (
    extract_state_dict,
    load_checkpoint,
    load_state_dict_strict,
)
from robust_style.transformer_net import TransformerNet, save_style_model

__all__ = ["ReferenceStep", "ReferenceVGG16", "reference_train"]

#: End indices (exclusive) of the four slices of torchvision's ``vgg16().features``:
#: relu1_2, relu2_2, relu3_3, relu4_3.
_SLICE_ENDS = (4, 9, 16, 23)


class ReferenceVGG16(nn.Module):
    """torchvision VGG-16 features in four slices; returns the four activations."""

    def __init__(self, weights: str | Path | None = None, caffe: bool = False) -> None:
        super().__init__()
        features = models.vgg16(weights=None).features
        if weights is not None:
            sd = extract_state_dict(load_checkpoint(weights), str(weights))
            sd = {k.removeprefix("features."): v for k, v in sd.items()}
            load_state_dict_strict(features, sd, str(weights))
        starts = (0, *_SLICE_ENDS[:-1])
        self.slices = nn.ModuleList(nn.Sequential(*features[a:b])
                                    for a, b in zip(starts, _SLICE_ENDS, strict=True))
        for p in self.parameters():
            p.requires_grad_(False)
        if caffe:
            mean, std, scale = CAFFE_MEAN_255, (1.0, 1.0, 1.0), 255.0
        else:
            mean, std, scale = IMAGENET_MEAN, IMAGENET_STD, 1.0
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x * self.scale - self.mean) / self.std
        out = []
        for s in self.slices:
            h = s(h)
            out.append(h)
        return out


def _gram(y: torch.Tensor) -> torch.Tensor:
    b, c, h, w = y.shape
    f = y.view(b, c, h * w)
    return f.bmm(f.transpose(1, 2)) / (c * h * w)


class ReferenceStep:
    """One step of the reference loop; ``step(x)`` returns the summed loss values."""

    def __init__(self, vgg: ReferenceVGG16, style: torch.Tensor, content_weight: float,
                 style_weight: float, lr: float = 1e-3, net: TransformerNet | None = None) -> None:
        self.vgg = vgg
        self.net = net or TransformerNet()
        self.net.train()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.mse = nn.MSELoss()
        self.cw, self.sw = content_weight, style_weight
        self.gram_style = [_gram(f) for f in vgg(style)]  # as the script: once, with autograd
        self.agg_content = 0.0
        self.agg_style = 0.0

    def __call__(self, x: torch.Tensor) -> float:
        n = x.shape[0]
        self.opt.zero_grad()
        y = self.net(x)
        features_y = self.vgg(y)
        features_x = self.vgg(x)
        content_loss = self.cw * self.mse(features_y[1], features_x[1])
        style_loss = 0.0
        for ft_y, gm_s in zip(features_y, self.gram_style, strict=True):
            gm_y = _gram(ft_y)
            style_loss = style_loss + self.mse(gm_y, gm_s.expand(n, -1, -1))
        style_loss = self.sw * style_loss
        total = content_loss + style_loss
        total.backward()
        self.opt.step()
        self.agg_content += content_loss.item()
        self.agg_style += style_loss.item()
        return self.agg_content + self.agg_style


def reference_train(step: ReferenceStep, batches: Iterable[torch.Tensor], max_seconds: float,
                    out: Path, meta: dict[str, Any], log_every: int = 10) -> dict[str, Any]:
    """Train with ``step`` until ``max_seconds`` pass; save ``out/style_model.pt``."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    steps = 0
    rows = []
    last = (0.0, 0.0)
    for x in batches:
        step(x)
        steps += 1
        if steps % log_every == 0:
            c, s = step.agg_content - last[0], step.agg_style - last[1]
            last = (step.agg_content, step.agg_style)
            rows.append(f"{steps},{c / log_every:.6g},{s / log_every:.6g},"
                        f"{time.perf_counter() - t0:.1f}")
        if time.perf_counter() - t0 >= max_seconds:
            break
    elapsed = time.perf_counter() - t0
    (out / "log.csv").write_text("step,content,style,elapsed_s\n" + "\n".join(rows) + "\n")
    save_style_model(out / "style_model.pt", step.net,
                     {**meta, "steps": steps, "precision": "fp32", "loop": "reference"})
    return {"steps": steps, "seconds": elapsed}
