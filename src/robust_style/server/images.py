"""Image decoding, encoding and colour operations of the serving path (Pillow + numpy).

Decoding is defensive: only JPEG, PNG and WebP are opened; the pixel count is checked
from the header *before* any pixel is decoded (decompression bombs); EXIF orientation is
applied (:func:`PIL.ImageOps.exif_transpose`); every mode is converted to ``HxWx3 uint8``
RGB: grayscale and palette images are expanded, 16-bit images are scaled to 8 bits and
images with an alpha channel are composited on white (a transparent background becomes
white, the way most viewers show it, rather than whatever colour the hidden pixels have).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from robust_style.contract import MIN_SIDE

__all__ = [
    "ImageError",
    "ImageTooLarge",
    "EncodedImage",
    "decode_image",
    "encode_image",
    "fit_max_side",
    "preserve_color",
    "blend",
    "check_size",
]

log = logging.getLogger(__name__)

_FORMATS = ("JPEG", "PNG", "WEBP")
_WHITE = (255, 255, 255)


class ImageError(ValueError):
    """The image cannot be used (empty, undecodable, too small): the client's fault."""


class ImageTooLarge(ImageError):
    """The image has more pixels than the server accepts."""


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    mime_type: str


def check_size(width: int, height: int, max_pixels: int) -> None:
    """Raise unless ``width x height`` is servable (both sides >= MIN_SIDE, few enough pixels)."""
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageError(f"image is {width}x{height} px; both sides must be at least "
                         f"{MIN_SIDE} px")
    if width * height > max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} = {width * height} px, more than the "
                            f"server's limit of {max_pixels} px (use max_side or a smaller image)")


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode JPEG/PNG/WebP bytes into an ``HxWx3 uint8`` RGB array (see module doc)."""
    if not data:
        raise ImageError("the image is empty (0 bytes); send an encoded JPEG, PNG or WebP file")
    try:
        img = Image.open(io.BytesIO(data), formats=_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image refused as a decompression bomb: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"cannot decode the image ({len(data)} bytes) as JPEG, PNG or WebP: "
                         f"{type(exc).__name__}") from None
    with img:
        width, height = img.size  # header only, nothing decoded yet
        check_size(width, height, max_pixels)
        try:
            img.load()
            img = ImageOps.exif_transpose(img) or img
            arr = _to_rgb(img)
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"the {img.format or 'image'} data is corrupt or truncated: "
                             f"{exc}") from None
    return arr


def _to_rgb(img: Image.Image) -> np.ndarray:
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


def fit_max_side(arr: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (Lanczos) so the longer side is at most ``max_side``; 0 = unchanged."""
    h, w = arr.shape[:2]
    if max_side <= 0 or max(h, w) <= max_side:
        return arr
    scale = max_side / max(h, w)
    size = (max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale)))
    return np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.LANCZOS))


def encode_image(arr: np.ndarray, fmt: str = "png", quality: int = 90) -> EncodedImage:
    """Encode ``HxWx3 uint8`` as PNG (fast zlib level 1) or JPEG (``quality`` 1..100)."""
    buf = io.BytesIO()
    img = Image.fromarray(np.ascontiguousarray(arr))
    if fmt == "jpeg":
        img.save(buf, format="JPEG", quality=int(quality), subsampling=0 if quality >= 90 else 2)
        return EncodedImage(buf.getvalue(), "image/jpeg")
    img.save(buf, format="PNG", compress_level=1)
    return EncodedImage(buf.getvalue(), "image/png")


# ITU-R BT.601 full-range YCbCr (as in JFIF): the luma/chroma split Gatys et al. use.
_RGB2YCC = np.array([[0.299, 0.587, 0.114],
                     [-0.168736, -0.331264, 0.5],
                     [0.5, -0.418688, -0.081312]], dtype=np.float32)
_YCC2RGB = np.linalg.inv(_RGB2YCC).astype(np.float32)


def preserve_color(content: np.ndarray, stylized: np.ndarray) -> np.ndarray:
    """Luminance-only transfer: the stylised image's Y with the content's Cb and Cr.

    Gatys, Bethge, Hertzmann, Shechtman (2016), "Preserving Color in Neural Artistic Style
    Transfer", arXiv:1606.05897, section 2.2 ("luminance-only transfer"), in YCbCr.
    """
    c = content.astype(np.float32) @ _RGB2YCC.T
    s = stylized.astype(np.float32) @ _RGB2YCC.T
    c[..., 0] = s[..., 0]
    rgb = c @ _YCC2RGB.T
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def blend(content: np.ndarray, stylized: np.ndarray, strength: float) -> np.ndarray:
    """Linear blend: ``strength`` 1 = stylised, 0 = content."""
    if strength >= 1.0:
        return stylized
    if strength <= 0.0:
        return content
    out = content.astype(np.float32) + strength * (stylized.astype(np.float32)
                                                   - content.astype(np.float32))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
