"""Server-side image handling: decoding every kind of photo, bombs, colour operations."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from server_fixtures import encode, photo

from robust_style import imageio
from robust_style.server import images


def test_rgb_jpeg_png_webp_decode_to_rgb_uint8() -> None:
    arr = photo("coffee", 80)
    for fmt in ("PNG", "JPEG", "WEBP"):
        out = imageio.decode_image(encode(arr, fmt), 10**6)
        assert out.dtype == np.uint8 and out.shape == arr.shape
        if fmt == "PNG":
            np.testing.assert_array_equal(out, arr)
        else:
            assert np.abs(out.astype(int) - arr).mean() < 12


def test_exif_orientation_is_applied() -> None:
    arr = photo("chelsea", 64)  # wider than tall
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    out = imageio.decode_image(buf.getvalue(), 10**6)
    assert out.shape[:2] == (arr.shape[1], arr.shape[0])


def test_gray_palette_alpha_and_16bit_become_rgb() -> None:
    arr = photo("astronaut", 64)
    gray = Image.fromarray(arr).convert("L")
    out = imageio.decode_image(encode(np.asarray(gray)), 10**6)
    assert out.shape == arr.shape and np.array_equal(out[..., 0], out[..., 2])

    pal = Image.fromarray(arr).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    out = imageio.decode_image(buf.getvalue(), 10**6)
    np.testing.assert_array_equal(out, np.asarray(pal.convert("RGB")))

    rgba = np.dstack([arr, np.zeros(arr.shape[:2], np.uint8)])  # fully transparent
    rgba[: arr.shape[0] // 2, :, 3] = 255  # top half opaque
    out = imageio.decode_image(encode(rgba), 10**6)
    np.testing.assert_array_equal(out[: arr.shape[0] // 2], arr[: arr.shape[0] // 2])
    assert (out[arr.shape[0] // 2 + 1:] == 255).all(), "transparent pixels composite on white"

    g16 = (np.asarray(gray).astype(np.uint16) * 257)
    buf = io.BytesIO()
    Image.fromarray(g16).save(buf, format="PNG")
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I")
    out = imageio.decode_image(buf.getvalue(), 10**6)
    np.testing.assert_array_equal(out[..., 1], np.asarray(gray))

    dark = (np.asarray(gray).astype(np.uint16) // 2)  # all values <= 127 of 65535: near black
    buf = io.BytesIO()
    Image.fromarray(dark).save(buf, format="PNG")
    out = imageio.decode_image(buf.getvalue(), 10**6)
    assert out.max() <= 1, "a dark 16-bit image must stay dark"


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return struct.pack(">I", len(body)) + kind + body + crc


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims a size, followed by a few bytes of pixel data only."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)[:12]
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)


def test_decompression_bomb_refused_before_decoding() -> None:
    # 50000 x 50000 claimed, nothing behind it: decoding would fail as truncated, so a
    # "too large" answer proves the size was checked from the header first.
    with pytest.raises(imageio.ImageTooLarge, match="limit"):
        imageio.decode_image(_png_header_only(50_000, 50_000), 10**6)
    with pytest.raises(imageio.ImageError, match="corrupt or truncated"):
        imageio.decode_image(_png_header_only(64, 64), 10**6)


def test_empty_garbage_and_tiny_images_are_refused() -> None:
    with pytest.raises(imageio.ImageError, match="empty"):
        imageio.decode_image(b"", 10**6)
    with pytest.raises(imageio.ImageError, match="cannot decode"):
        imageio.decode_image(b"GIF89a not really", 10**6)
    with pytest.raises(imageio.ImageError, match="at least 8 px"):
        imageio.decode_image(encode(np.zeros((4, 100, 3), np.uint8)), 10**6)
    jpeg = encode(photo("coffee", 64), "JPEG")
    with pytest.raises(imageio.ImageError):
        imageio.decode_image(jpeg[: len(jpeg) // 3], 10**6)


def test_preserve_color_keeps_content_chroma_and_style_luma() -> None:
    content = photo("coffee", 64).astype(np.uint8)
    stylized = photo("astronaut", 64)[: content.shape[0], : content.shape[1]]
    stylized = np.ascontiguousarray(stylized)
    out = images.preserve_color(content, stylized)
    ycc = lambda a: a.astype(np.float32) @ images._RGB2YCC.T  # noqa: E731
    # Luma from the stylised image, chroma from the content (up to rounding and clipping).
    assert np.median(np.abs(ycc(out)[..., 0] - ycc(stylized)[..., 0])) < 1.0
    assert np.median(np.abs(ycc(out)[..., 1:] - ycc(content)[..., 1:])) < 1.0
    assert np.abs(out.astype(int) - stylized).mean() > 5  # the colours did change


def test_blend_and_max_side() -> None:
    a = np.zeros((16, 16, 3), np.uint8)
    b = np.full((16, 16, 3), 200, np.uint8)
    assert (images.blend(a, b, 0.0) == 0).all() and (images.blend(a, b, 1.0) == 200).all()
    assert (images.blend(a, b, 0.25) == 50).all()
    big = photo("astronaut", 120)
    small = imageio.fit_max_side(big, 50)
    assert max(small.shape[:2]) == 50 and imageio.fit_max_side(big, 0) is big
