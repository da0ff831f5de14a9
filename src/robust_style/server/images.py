"""Encoding and colour operations of the serving path (Pillow + numpy).

Decoding is :mod:`robust_style.imageio`, shared with training, analysis and the demo.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["RAW_MIME", "EncodedImage", "encode_image", "preserve_color", "blend", "finish"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    mime_type: str


#: The MIME type of raw ``HxWx3 uint8`` RGB (``IMAGE_FORMAT_RAW_RGB``).
RAW_MIME = "application/x-raw-rgb"


def encode_image(arr: np.ndarray, fmt: str = "png", quality: int = 90) -> EncodedImage:
    """Encode ``HxWx3 uint8`` as PNG (fast zlib level 1), JPEG (``quality`` 1..100) or
    ``raw`` (the bytes as they are: frames between a client and server that agree)."""
    if fmt == "raw":
        return EncodedImage(np.ascontiguousarray(arr, np.uint8).tobytes(), RAW_MIME)
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


def finish(content: np.ndarray, stylized: np.ndarray, *, luminance_only: bool = False,
           strength: float | None = None) -> np.ndarray:
    """The post-processing of a ``Stylize`` request (server and local ``stylize``)."""
    out = preserve_color(content, stylized) if luminance_only else stylized
    return blend(content, out, strength) if strength is not None else out
