"""Shared fixtures: the ../shared data folder, real photos, and checkpoint makers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROBUST_STYLE_SHARED", REPO.parent / "shared"))
VGG16_CAFFE = SHARED / "weights" / "vgg16-imagenet-caffe-features.pth"
STYLES = SHARED / "images" / "styles"


@pytest.fixture(scope="session")
def shared_vgg16() -> Path:
    if not VGG16_CAFFE.is_file():
        pytest.skip(f"needs the shared VGG-16 weights at {VGG16_CAFFE} (only on CI/dev machines)")
    return VGG16_CAFFE


@pytest.fixture(scope="session")
def shared_style() -> Path:
    path = STYLES / "the-scream.jpg"
    if not path.is_file():
        pytest.skip(f"needs the shared paintings in {STYLES} (only on CI/dev machines)")
    return path


def skimage_photo(name: str) -> np.ndarray:
    """A real photo from scikit-image's bundled data, as HxWx3 uint8 RGB."""
    data = pytest.importorskip("skimage.data")
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of real photos (scikit-image data) as JPEG and PNG files."""
    from PIL import Image

    out = tmp_path_factory.mktemp("photos")
    for i, name in enumerate(["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
                              "motorcycle_left"]):
        try:
            arr = skimage_photo(name)
        except Exception:  # noqa: BLE001 - a missing optional image is fine
            continue
        ext = "jpg" if i % 2 == 0 else "png"
        sub = out / ("a" if i < 3 else "b")
        sub.mkdir(exist_ok=True)
        Image.fromarray(arr).save(sub / f"{name}.{ext}")
    return out
