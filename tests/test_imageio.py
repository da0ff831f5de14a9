"""The one image decoder, as the server, training, analysis and the demo use it."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import skimage_photo
from PIL import Image

from robust_style import imageio


def _jpeg(arr: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _rotated_jpeg(path: Path) -> np.ndarray:
    """Write a JPEG whose EXIF says "rotate 90 CW"; return the upright pixels a viewer shows."""
    arr = skimage_photo("chelsea")[::4, ::4]  # wider than tall
    img = Image.fromarray(np.ascontiguousarray(arr))
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(path, format="JPEG", exif=exif.tobytes(), quality=95)
    with Image.open(path) as raw:
        return np.asarray(raw.convert("RGB").transpose(Image.Transpose.ROTATE_270))


def _gray16(path: Path) -> np.ndarray:
    """A 16-bit greyscale PNG of a real photo; returns its 8-bit equivalent."""
    gray = np.asarray(Image.fromarray(skimage_photo("camera")[::4, ::4]).convert("L"))
    Image.fromarray(gray.astype(np.uint16) * 257).save(path, format="PNG")
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    return gray


def test_max_side_downscales_before_the_pixel_limit() -> None:
    photo = skimage_photo("astronaut")  # 512 x 512
    data = _png(photo)
    with pytest.raises(imageio.ImageTooLarge, match="max_side"):
        imageio.decode_image(data, max_pixels=100_000)
    out = imageio.decode_image(data, max_pixels=100_000, max_side=256)
    assert out.shape == (256, 256, 3)
    # Same pixels as decoding in full, then downscaling.
    np.testing.assert_array_equal(out, imageio.fit_max_side(imageio.decode_image(data), 256))


def test_jpeg_is_decoded_at_reduced_size_others_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    photo = np.ascontiguousarray(skimage_photo("astronaut"))  # 262 144 px
    # Decoding may produce at most 200 000 px here (Pillow's bomb threshold, lowered).
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        out = imageio.decode_image(_jpeg(photo), max_pixels=50_000, max_side=200)
        assert out.shape == (200, 200, 3)  # decoded at 256 x 256, then Lanczos to 200
        assert np.abs(out.astype(int) - imageio.fit_max_side(photo, 200)).mean() < 6
        with pytest.raises(imageio.ImageTooLarge, match="only JPEGs"):
            imageio.decode_image(_png(photo), max_pixels=50_000, max_side=200)


def test_cmyk_palette_and_alpha_become_rgb() -> None:
    photo = skimage_photo("coffee")[::4, ::4]
    cmyk = imageio.decode_image(_jpeg(np.ascontiguousarray(photo)), None)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(photo)).convert("CMYK").save(buf, format="JPEG",
                                                                    quality=95)
    out = imageio.decode_image(buf.getvalue())
    assert out.shape == photo.shape and np.abs(out.astype(int) - cmyk).mean() < 8
    la = Image.fromarray(np.ascontiguousarray(photo)).convert("LA")
    la.putalpha(0)
    buf = io.BytesIO()
    la.save(buf, format="PNG")
    assert (imageio.decode_image(buf.getvalue()) == 255).all()


def test_missing_and_broken_files_are_one_line_user_errors(tmp_path: Path) -> None:
    from robust_style.errors import UserError

    with pytest.raises(UserError, match="not found"):
        imageio.read_image(tmp_path / "nope.jpg")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="bad.png") as info:
        imageio.read_image(tmp_path / "bad.png")
    assert "\n" not in str(info.value)


def test_training_reads_16bit_and_exif_like_the_server(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from robust_style.imageio import load_rgb
    from robust_style.transformer_net.data import load_image_tensor

    gray = _gray16(tmp_path / "g16.png")
    out = np.asarray(load_rgb(tmp_path / "g16.png"))
    np.testing.assert_array_equal(out[..., 0], gray)  # not clipped to white
    upright = _rotated_jpeg(tmp_path / "rot.jpg")
    t = load_image_tensor(tmp_path / "rot.jpg")
    assert tuple(t.shape[2:]) == upright.shape[:2]
    server = imageio.decode_image((tmp_path / "rot.jpg").read_bytes())
    np.testing.assert_array_equal(np.asarray(load_rgb(tmp_path / "rot.jpg")), server)


def test_analysis_reads_16bit_and_exif_like_the_server(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from robust_style.analysis.images import load_image

    gray = _gray16(tmp_path / "g16.png")
    t = load_image(tmp_path / "g16.png")
    np.testing.assert_allclose(t[0, 1].numpy() * 255, gray, atol=0.01)
    upright = _rotated_jpeg(tmp_path / "rot.jpg")
    assert tuple(load_image(tmp_path / "rot.jpg").shape[2:]) == upright.shape[:2]


def test_demo_comparison_shows_the_photo_upright(tmp_path: Path) -> None:
    from robust_style.cli.cmd_demo import _comparison

    upright = _rotated_jpeg(tmp_path / "rot.jpg")
    # A "stylised" result that is the upright photo itself: both halves must then agree.
    Image.fromarray(upright).save(tmp_path / "rot_x.png")
    _comparison(tmp_path / "rot.jpg", tmp_path / "rot_x.png", Image)
    grid = np.asarray(Image.open(tmp_path / "rot_x-compare.png").convert("RGB")).astype(int)
    h, w = upright.shape[:2]
    assert grid.shape[:2] == (h, 2 * w + 8)
    assert np.abs(grid[:, :w] - grid[:, w + 8:]).mean() < 3


def test_one_list_of_suffixes(tmp_path: Path) -> None:
    from robust_style.cli.cmd_stylize import collect_inputs

    for name in ("a.JPG", "b.jpeg", "c.png", "d.webp", "e.txt", "f.gif"):
        (tmp_path / name).write_bytes(b"x")
    found = sorted(p.name for p, _ in collect_inputs([tmp_path]))
    assert found == ["a.JPG", "b.jpeg", "c.png", "d.webp"]
    assert all(imageio.is_image_file(tmp_path / n) for n in found)


def test_one_listing_of_image_files(tmp_path: Path) -> None:
    from robust_style.errors import UserError

    (tmp_path / "sub").mkdir()
    for name in ("b.png", "sub/a.JPG", "c.txt", "sub/d.webp"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()  # a folder named like an image is not an image
    assert [p.relative_to(tmp_path).as_posix() for p in imageio.list_images(tmp_path)] == [
        "b.png", "sub/a.JPG", "sub/d.webp"]
    with pytest.raises(UserError, match="content folder not found"):
        imageio.list_images(tmp_path / "missing", what="content folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        imageio.list_images(tmp_path / "empty")
    assert imageio.list_images(tmp_path / "empty", required=False) == []


def test_one_shorter_side_resize_policy() -> None:
    photo = Image.fromarray(skimage_photo("chelsea"))  # 451 x 300
    out = imageio.resize_shorter_side(photo, 128)
    assert min(out.size) == 128
    assert out.size == (round(451 * 128 / 300), 128)
    assert imageio.resize_shorter_side(photo, 0) is photo
    tall = imageio.resize_shorter_side(photo.transpose(Image.Transpose.ROTATE_90), 64)
    assert tall.size == (64, round(451 * 64 / 300))
    crop = imageio.cover_crop(np.asarray(photo), 100, 40)
    assert crop.shape == (100, 40, 3) and crop.flags.c_contiguous


def test_save_is_atomic_and_refuses_unknown_suffixes(tmp_path: Path) -> None:
    arr = skimage_photo("astronaut")[::8, ::8]
    out = imageio.save_image(arr, tmp_path / "a.png")
    np.testing.assert_array_equal(imageio.read_image(out), arr)
    before = out.read_bytes()
    with pytest.raises(imageio.ImageError, match="unknown image format"):
        imageio.save_image(arr, tmp_path / "a.xyz")
    with pytest.raises(Exception):  # noqa: B017 - Pillow's error for a bad option
        imageio.save_image(Image.fromarray(arr), out, compress_level="not a number")
    assert out.read_bytes() == before  # the old file survives a failed save
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no temporary left


def test_header_check_refuses_tiny_and_undecodable_files(tmp_path: Path) -> None:
    Image.new("RGB", (4, 64)).save(tmp_path / "tiny.png")
    (tmp_path / "junk.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(imageio.ImageError, match="at least"):
        imageio.read_size(tmp_path / "tiny.png")
    with pytest.raises(imageio.ImageError, match="cannot decode"):
        imageio.read_size(tmp_path / "junk.jpg")
    Image.fromarray(skimage_photo("chelsea")).save(tmp_path / "ok.png")
    assert imageio.read_size(tmp_path / "ok.png") == (451, 300)


def test_video_frame_folders_use_the_one_decoder(tmp_path: Path) -> None:
    from robust_style.video.source import VideoReadError, open_source

    gray = _gray16(tmp_path / "frame1.png")
    (tmp_path / "frame2.png").write_bytes(b"\x89PNG broken")
    source = open_source(tmp_path)
    frames = iter(source)
    first = next(frames)
    np.testing.assert_array_equal(first.image[..., 0], gray)  # 16-bit scaled, not clipped
    with pytest.raises(VideoReadError, match="frame2.png"):
        next(frames)
    source.close()
