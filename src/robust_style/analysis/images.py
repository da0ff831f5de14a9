"""Image files in and out for the analysis tools, as [0, 1] RGB NCHW tensors.

Listing, decoding, resizing and the atomic save are :mod:`robust_style.imageio`'s; this module
only converts to and from tensors. Images are resized so the shorter side is ``size`` and
centre-cropped to ``size × size`` when a square batch is needed (R(f) compares features of
different photos, so they must have one shape).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from robust_style import imageio
from robust_style.contract import MIN_SIDE
from robust_style.errors import UserError
from robust_style.imageio import list_images, load_rgb, resize_shorter_side

__all__ = ["load_image", "load_image_folder", "save_image"]


def _to_tensor(im: Image.Image) -> torch.Tensor:
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def load_image(path: str | Path, size: int | None = None, *, square: bool = False) -> torch.Tensor:
    """One image as a ``(1, 3, H, W)`` tensor in [0, 1].

    ``size`` resizes the shorter side (keeping the aspect ratio); ``square`` also
    centre-crops to ``size × size``.
    """
    im = load_rgb(path)
    if size is not None:
        if size < MIN_SIDE:
            raise UserError(f"image size must be at least {MIN_SIDE} pixels, not {size}")
        im = resize_shorter_side(im, size)
        if square:
            w, h = im.size
            left, top = (w - size) // 2, (h - size) // 2
            im = im.crop((left, top, left + size, top + size))
    return _to_tensor(im).unsqueeze(0)


def load_image_folder(folder: str | Path, size: int, limit: int | None = None) -> tuple[
        torch.Tensor, list[Path]]:
    """Up to ``limit`` images of ``folder`` as one ``(N, 3, size, size)`` batch."""
    files = list_images(folder)
    if limit is not None:
        files = files[:limit]
    batch = torch.cat([load_image(p, size, square=True) for p in files])
    return batch, files


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Write a ``(1, 3, H, W)`` or ``(3, H, W)`` [0, 1] tensor atomically (format from suffix)."""
    out = Path(path)
    if image.dim() == 4:
        image = image[0]
    arr = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round()
    return imageio.save_image(arr.astype(np.uint8), out)
