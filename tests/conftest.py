"""Shared fixtures: the ../shared data folder, real photos, and checkpoint makers.

Tests that need ``../shared`` (real weights, paintings) take one of the ``shared_*``
fixtures, which skip with a reason where the folder is absent (a user's checkout). CI
has it, so there such a skip is a failure: with ``CI`` set (``CI=true``, as the CI runner
sets it) :func:`pytest_runtest_makereport` turns every skip raised by :func:`need_shared`
into a failed test, so a missing or renamed shared file cannot pass CI unnoticed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

#: The server fixtures (``model_store``, ``models_dir``, ``server``) for every test module;
#: their helper functions (``photo``, ``encode``, ``start_server``...) are imported by name.
pytest_plugins = ["server_fixtures"]

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROBUST_STYLE_SHARED", REPO.parent / "shared"))
VGG16_CAFFE = SHARED / "weights" / "vgg16-imagenet-caffe-features.pth"
VGG19_CAFFE = SHARED / "weights" / "vgg19-imagenet-caffe-features.pth"
ALEXNET = SHARED / "weights" / "alexnet-torchvision-features.pth"
LPIPS_LIN = SHARED / "weights" / "lpips" / "lpips-v0.1-alex-lin.pth"
STYLES = SHARED / "images" / "styles"
#: Every skip for missing shared data starts with this; CI turns such skips into failures.
SHARED_SKIP = "needs ../shared: "


def ci_enforces_shared() -> bool:
    """True on CI (``CI`` set to anything but empty/0/false)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def need_shared(path: Path, what: str) -> Path:
    """``path`` if it exists, else skip (locally) naming what is missing."""
    if not path.exists():
        pytest.skip(f"{SHARED_SKIP}{what} at {path} (only on CI/dev machines)")
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and ci_enforces_shared() and call.excinfo is not None):
        return
    reason = str(getattr(call.excinfo.value, "msg", "") or call.excinfo.value)
    if reason.startswith(SHARED_SKIP):
        report.outcome = "failed"
        report.longrepr = (f"CI is set but a test needing ../shared was skipped: {reason}. "
                           "CI must run every shared-data test.")
    elif (missing := _ci_required_import(reason)) is not None:
        report.outcome = "failed"
        report.longrepr = (f"CI is set but a test was skipped because {missing!r}, which the "
                           f"train/dev extras install, does not import: {reason}. A broken dev "
                           "install must not silently skip tests.")


#: Top-level modules of the train and dev extras (pyproject.toml) that scripts/test.sh
#: installs: on CI an ``importorskip`` of one of them failing is a broken install, not a skip.
CI_REQUIRED_IMPORTS = frozenset({"skimage", "torch", "torchvision", "onnx", "onnxruntime", "cv2",
                                 "h5py", "grpc_tools", "cryptography", "tritonclient", "lpips",
                                 "selenium", "httpx"})


def _ci_required_import(reason: str) -> str | None:
    """The required module an ``importorskip`` skip message names, else None."""
    m = re.match(r"could not import '([\w.]+)'", reason)
    if m and m.group(1).split(".")[0] in CI_REQUIRED_IMPORTS:
        return m.group(1)
    return None


@pytest.fixture(scope="session")
def shared_vgg16() -> Path:
    return need_shared(VGG16_CAFFE, "the shared VGG-16 weights")


@pytest.fixture(scope="session")
def shared_vgg19() -> Path:
    return need_shared(VGG19_CAFFE, "the shared Oxford VGG-19 weights")


@pytest.fixture(scope="session")
def shared_alexnet() -> Path:
    return need_shared(ALEXNET, "the shared AlexNet weights")


@pytest.fixture(scope="session")
def shared_lpips_lin() -> Path:
    return need_shared(LPIPS_LIN, "the shared LPIPS v0.1 linear layers")


@pytest.fixture(scope="session")
def shared_style() -> Path:
    return need_shared(STYLES / "the-scream.jpg", "the shared paintings")


@pytest.fixture(scope="session")
def shared_udnie() -> Path:
    return need_shared(STYLES / "udnie.jpg", "the shared paintings")


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
        except Exception:
            continue
        ext = "jpg" if i % 2 == 0 else "png"
        sub = out / ("a" if i < 3 else "b")
        sub.mkdir(exist_ok=True)
        Image.fromarray(arr).save(sub / f"{name}.{ext}")
    return out
