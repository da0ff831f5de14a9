"""Sample pictures written during training: the stylised held-out photo and a
content | style | result grid."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

__all__ = ["tensor_to_image", "make_grid"]


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """``(1, 3, H, W)`` or ``(3, H, W)`` float in [0, 1] to a PIL RGB image."""
    if x.dim() == 4:
        x = x[0]
    arr = (x.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def make_grid(images: Sequence[Image.Image], height: int = 256, gap: int = 4) -> Image.Image:
    """Images side by side at a common height, on white."""
    scaled = [im.resize((max(1, round(im.width * height / im.height)), height), Image.Resampling.LANCZOS)
              for im in images]
    width = sum(im.width for im in scaled) + gap * (len(scaled) - 1)
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    x = 0
    for im in scaled:
        grid.paste(im, (x, 0))
        x += im.width + gap
    return grid
