"""Sample pictures written during training: the stylised held-out photo and a
content | style | result grid."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

__all__ = ["tensor_to_image", "save_image_atomic", "make_grid"]


def tensor_to_image(x: torch.Tensor) -> Image.Image:
    """``(1, 3, H, W)`` or ``(3, H, W)`` float in [0, 1] to a PIL RGB image."""
    if x.dim() == 4:
        x = x[0]
    arr = (x.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def save_image_atomic(image: Image.Image, path: str | Path, **kwargs: object) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        image.save(tmp, **kwargs)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def make_grid(images: Sequence[Image.Image], height: int = 256, gap: int = 4) -> Image.Image:
    """Images side by side at a common height, on white."""
    scaled = [im.resize((max(1, round(im.width * height / im.height)), height), Image.LANCZOS)
              for im in images]
    width = sum(im.width for im in scaled) + gap * (len(scaled) - 1)
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    x = 0
    for im in scaled:
        grid.paste(im, (x, 0))
        x += im.width + gap
    return grid
