"""The one image decoder: bytes or files -> ``HxWx3 uint8`` RGB (Pillow + numpy, no torch).

Used by the server, training, the analysis tools and the demo, so a photo looks the same
everywhere. Only JPEG, PNG and WebP are opened (:data:`FORMATS`; :data:`IMAGE_SUFFIXES` is
the one list of file suffixes). Every decode:

- reads the size from the header first and refuses images too small, or too large to
  decode (decompression bombs), before any pixel is decoded;
- with ``max_side``, decodes JPEGs at reduced size (``Image.draft``: the decoder's DCT
  scaling by 1/2, 1/4 or 1/8) and downscales (Lanczos) to ``max_side`` *before* the pixel
  limit is checked, so ``max_side`` really rescues a photo that is too large;
- applies the EXIF orientation (:func:`PIL.ImageOps.exif_transpose`);
- converts every mode to RGB: grayscale, palette and CMYK are expanded, 16-bit images are
  scaled to 8 bits (``convert("RGB")`` would clip them), and images with an alpha channel
  are composited on white (the way most viewers show a transparent background).

It is also the one home of the file-level helpers every tool shares: :func:`list_images`
(the one listing of image files under a folder), :func:`load_rgb` (a file as a Pillow RGB
image, through the decoder above), :func:`resize_shorter_side` (the one shorter-side resize
policy: aspect ratio kept, sides rounded, never below ``size``), :func:`cover_crop` (resize to
cover a box, then centre-crop) and :func:`save_image` (atomic: a temporary file in the target
folder, then ``os.replace``, so a reader never sees half an image).
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from robust_style.contract import MIN_SIDE
from robust_style.errors import UserError
from robust_style.fileio import atomic_write

__all__ = [
    "FORMATS",
    "fitted_size",
    "IMAGE_SUFFIXES",
    "ImageError",
    "ImageTooLarge",
    "check_size",
    "cover_crop",
    "decode_image",
    "fit_max_side",
    "is_image_file",
    "list_images",
    "load_rgb",
    "read_image",
    "read_size",
    "resize_shorter_side",
    "save_image",
    "to_rgb",
]

log = logging.getLogger(__name__)

#: Pillow format name -> file suffixes. Nothing else is opened (a smaller attack surface).
FORMATS: dict[str, tuple[str, ...]] = {"JPEG": (".jpg", ".jpeg"), "PNG": (".png",),
                                       "WEBP": (".webp",)}
#: The one list of image file suffixes (lower case).
IMAGE_SUFFIXES: tuple[str, ...] = tuple(s for suffixes in FORMATS.values() for s in suffixes)
_WHITE = (255, 255, 255)


class ImageError(UserError, ValueError):
    """The image cannot be used (missing, empty, undecodable, too small): the user's fault."""


class ImageTooLarge(ImageError):
    """The image has more pixels than allowed."""


def is_image_file(path: str | Path) -> bool:
    """True for a file with one of :data:`IMAGE_SUFFIXES` (case-insensitive)."""
    return str(path).lower().endswith(IMAGE_SUFFIXES)


def check_size(width: int, height: int, max_pixels: int | None) -> None:
    """Raise unless ``width x height`` is usable (both sides >= MIN_SIDE, few enough pixels)."""
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageError(f"image is {width}x{height} px; both sides must be at least "
                         f"{MIN_SIDE} px")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} px, more than the "
                            f"limit of {max_pixels} px (downscale it, e.g. with max_side, or send a smaller image)")


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """``(width, height)`` after :func:`fit_max_side` (0 = unchanged)."""
    if max_side <= 0 or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(MIN_SIDE, round(width * scale)), max(MIN_SIDE, round(height * scale))


def fit_max_side(arr: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (Lanczos) so the longer side is at most ``max_side``; 0 = unchanged."""
    h, w = arr.shape[:2]
    size = fitted_size(w, h, max_side)
    if size == (w, h):
        return arr
    return np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.LANCZOS))


def _decode_limit(max_pixels: int | None) -> int | None:
    """Pixels one decode may produce: Pillow's decompression-bomb threshold or the limit."""
    bomb = Image.MAX_IMAGE_PIXELS
    if max_pixels is None or bomb is None:
        return None if max_pixels is None else max(max_pixels, 0)
    return max(int(bomb), max_pixels)


def _open(source: io.BytesIO | Path, what: str) -> Image.Image:
    try:
        return Image.open(source, formats=tuple(FORMATS))
    except FileNotFoundError:
        raise ImageError(f"image not found: {what}") from None
    except IsADirectoryError:
        raise ImageError(f"{what} is a directory, not an image") from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{what} refused as a decompression bomb: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"cannot decode {what} as JPEG, PNG or WebP: "
                         f"{type(exc).__name__}") from None


def _decode(img: Image.Image, what: str, max_pixels: int | None, max_side: int) -> np.ndarray:
    with img:
        width, height = img.size  # header only, nothing decoded yet
        check_size(width, height, None)
        target = fitted_size(width, height, max_side)
        check_size(*target, max_pixels)
        if target != (width, height) and img.format == "JPEG":
            img.draft(None, target)  # decode at 1/2, 1/4 or 1/8 scale, never below target
        decoded = img.size
        limit = _decode_limit(max_pixels)
        if limit is not None and decoded[0] * decoded[1] > limit:
            raise ImageTooLarge(
                f"image is {width}x{height} px: decoding it needs {decoded[0] * decoded[1]} px, "
                f"more than the limit of {limit} px even with max_side (only JPEGs can be "
                "decoded at reduced size); send a smaller image")
        try:
            img.load()
            img = ImageOps.exif_transpose(img) or img
            arr = to_rgb(img)
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"the {img.format or 'image'} data of {what} is corrupt or "
                             f"truncated: {exc}") from None
    return fit_max_side(arr, max_side)


def decode_image(data: bytes, max_pixels: int | None = None, max_side: int = 0) -> np.ndarray:
    """Decode JPEG/PNG/WebP bytes into ``HxWx3 uint8`` RGB (see the module doc).

    ``max_pixels`` limits the image *after* the ``max_side`` downscale (None = no limit).
    """
    if not data:
        raise ImageError("the image is empty (0 bytes); send an encoded JPEG, PNG or WebP file")
    what = f"the image ({len(data)} bytes)"
    return _decode(_open(io.BytesIO(data), what), what, max_pixels, max_side)


def read_image(path: str | Path, max_pixels: int | None = None, max_side: int = 0
               ) -> np.ndarray:
    """:func:`decode_image` for a file; errors name the file."""
    p = Path(path)
    return _decode(_open(p, str(p)), str(p), max_pixels, max_side)


def read_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header only (nothing decoded), with the
    decoder's format and minimum-size checks; raises :class:`ImageError`."""
    p = Path(path)
    with _open(p, str(p)) as img:
        width, height = img.size
    check_size(width, height, None)
    return width, height


def to_rgb(img: Image.Image) -> np.ndarray:
    """Any decoded Pillow image as ``HxWx3 uint8`` RGB (16-bit scaled, alpha on white)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img)
        # The only integer modes JPEG/PNG/WebP decode to are 16-bit greyscale PNGs
        # (``I;16`` or, in older Pillow, ``I``): full scale is always 65535. Guessing from the
        # maximum would brighten a dark 16-bit photo 257-fold.
        top = 65535.0
        if mode == "F":
            top = 1.0 if float(arr.max(initial=0.0)) <= 1.0 else 65535.0
        gray = np.clip(np.rint(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=-1))
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    elif mode in ("1", "L", "CMYK", "YCbCr", "LAB", "HSV"):
        img = img.convert("RGB")
    elif mode == "PA" or (mode not in ("RGB", "RGBA", "LA") and "A" in mode):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def list_images(folder: str | Path, *, what: str = "image folder",
                required: bool = True) -> list[Path]:
    """The image files under ``folder`` (recursive, sorted by path, by :data:`IMAGE_SUFFIXES`).

    Raises :class:`UserError` if ``folder`` is not a folder (the message names it as
    ``what``), and, with ``required``, if it holds no image.
    """
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"{what} not found: {root}")
    files = sorted(p for p in root.rglob("*") if is_image_file(p) and p.is_file())
    if required and not files:
        raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    return files


def load_rgb(path: str | Path, max_pixels: int | None = None) -> Image.Image:
    """A file as a Pillow RGB image through :func:`read_image` (all its checks; errors are
    one-line :class:`ImageError` s naming the file)."""
    return Image.fromarray(read_image(path, max_pixels=max_pixels))


def resize_shorter_side(image: Image.Image, size: int,
                        resample: Image.Resampling = Image.Resampling.BICUBIC) -> Image.Image:
    """Resize so the shorter side is ``size`` (aspect ratio kept, the longer side rounded and
    never below ``size``); ``size`` 0 = unchanged."""
    if not size:
        return image
    w, h = image.size
    scale = size / min(w, h)
    target = (max(size, round(w * scale)), max(size, round(h * scale)))
    return image if target == (w, h) else image.resize(target, resample)


def cover_crop(arr: np.ndarray, height: int, width: int,
               resample: Image.Resampling = Image.Resampling.BILINEAR) -> np.ndarray:
    """Resize ``HxWx3`` ``arr`` to cover ``height x width``, then centre-crop to exactly that."""
    ph, pw = arr.shape[:2]
    s = max(height / ph, width / pw)
    nh, nw = max(height, math.ceil(ph * s)), max(width, math.ceil(pw * s))
    img = np.asarray(Image.fromarray(arr).resize((nw, nh), resample))
    top, left = (nh - height) // 2, (nw - width) // 2
    return np.ascontiguousarray(img[top:top + height, left:left + width, :3])


def save_image(image: Image.Image | np.ndarray, path: str | Path, **kwargs: Any) -> Path:
    """Write ``image`` (Pillow, or ``HxWx3 uint8``) to ``path`` atomically.

    The format comes from the suffix unless ``format=`` is given; other keyword arguments go
    to :meth:`PIL.Image.Image.save`. An unknown suffix raises :class:`ImageError`.
    """
    out = Path(path)
    im = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    fmt = kwargs.pop("format", None) or Image.registered_extensions().get(out.suffix.lower())
    if fmt is None:
        raise ImageError(f"unknown image format {out.suffix!r} for {out}; use .png or .jpg")
    with atomic_write(out) as fh:
        im.save(fh, format=fmt, **kwargs)
    return out
