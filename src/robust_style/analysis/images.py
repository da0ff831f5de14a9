"""Image files in and out for the analysis tools: [0, 1] RGB NCHW tensors.

Images are resized so the shorter side is ``size`` and centre-cropped to ``size × size``
when a square batch is needed (R(f) compares features of different photos, so they must
have one shape). Writes are atomic: a temporary file in the target directory, then
``os.replace``, so a reader never sees half an image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from robust_style.errors import UserError
from robust_style.fileio import atomic_write, file_mode
from robust_style.imageio import IMAGE_SUFFIXES, is_image_file, read_image

__all__ = ["file_mode", "list_images", "load_image", "load_image_folder", "save_image"]



def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted by path."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if is_image_file(p) and p.is_file())
    if not files:
        raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    return files


def _open_rgb(path: Path) -> Image.Image:
    """The one decoder (EXIF orientation, 16-bit, alpha on white); errors are UserErrors."""
    return Image.fromarray(read_image(path))


def _to_tensor(im: Image.Image) -> torch.Tensor:
    arr = np.asarray(im, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def load_image(path: str | Path, size: int | None = None, *, square: bool = False) -> torch.Tensor:
    """One image as a ``(1, 3, H, W)`` tensor in [0, 1].

    ``size`` resizes the shorter side (keeping the aspect ratio); ``square`` also
    centre-crops to ``size × size``.
    """
    im = _open_rgb(Path(path))
    if size is not None:
        if size < 8:
            raise UserError(f"image size must be at least 8 pixels, not {size}")
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                       Image.Resampling.BICUBIC)
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
    im = Image.fromarray(arr.astype(np.uint8))
    fmt = Image.registered_extensions().get(out.suffix.lower())
    if fmt is None:
        raise UserError(f"unknown image format {out.suffix!r} for {out}; use .png or .jpg")
    with atomic_write(out) as fh:
        im.save(fh, format=fmt)
    return out
