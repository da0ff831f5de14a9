"""The bundled default style: it ships, says where it came from, and stylises real photos."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from robust_style.cli import main
from robust_style.contract import FORMAT, INPUT_NAME, OUTPUT_NAME, parse_metadata

MODELS = Path(str(resources.files("robust_style") / "models"))
BUNDLED = MODELS / "the-scream.onnx"
SAMPLE = MODELS / "sample.jpg"
# From ../shared/README.md: the Caffe VGG-16 weights and The Scream.
VGG16_CAFFE_SHA256 = "6a68f3706b182f96340ab3106417cbbcf708e6dd1668e0cd7bdacacb53432144"
SCREAM_SHA256 = "dcab7bae866fbb396e01ab27a9c8d2d40b3e80911dafb05a5fa18d1bac6b8d17"


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    assert BUNDLED.is_file(), f"the bundled model is missing: {BUNDLED}"
    return ort.InferenceSession(str(BUNDLED), providers=["CPUExecutionProvider"])


def test_bundled_model_has_its_provenance(session: ort.InferenceSession) -> None:
    meta = parse_metadata(session.get_modelmeta().custom_metadata_map)
    assert meta.format == FORMAT
    assert meta.name == "the-scream"
    assert meta.backbone == "vgg16-caffe"
    assert meta.backbone_sha256 == VGG16_CAFFE_SHA256
    assert meta.style_image_sha256 == SCREAM_SHA256
    assert meta.steps >= 100
    assert meta.config["content"].endswith("train")
    assert meta.config["image_size"] >= 64
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    assert [o.name for o in session.get_outputs()] == [OUTPUT_NAME]


def _photos() -> list[np.ndarray]:
    """Photos the bundled model was not trained on (see README: held out)."""
    out = [np.asarray(Image.open(SAMPLE).convert("RGB"))]
    try:
        import matplotlib

        hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        if hopper.is_file():
            out.append(np.asarray(Image.open(hopper).convert("RGB").resize((301, 353))))
    except ImportError:
        pass
    return out


@pytest.mark.parametrize("index", [0, 1])
def test_bundled_model_stylises_unseen_photos(session: ort.InferenceSession, index: int) -> None:
    photos = _photos()
    if index >= len(photos):
        pytest.skip("matplotlib's sample photo is not installed")
    x = photos[index]
    y = session.run([OUTPUT_NAME], {INPUT_NAME: x[None]})[0][0]
    assert y.shape == x.shape and y.dtype == np.uint8
    diff = np.abs(y.astype(np.int16) - x.astype(np.int16))
    # Substantially different from the photo, yet not a flat image.
    assert diff.mean() > 25, diff.mean()
    assert y.std() > 20
    # Structure kept: the stylised image still correlates with the photo's luminance.
    lum_x = x.astype(np.float64) @ [0.299, 0.587, 0.114]
    lum_y = y.astype(np.float64) @ [0.299, 0.587, 0.114]
    assert np.corrcoef(lum_x.ravel(), lum_y.ravel())[0, 1] > 0.1


def test_demo_command_stylises_the_sample_through_grpc(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "-o", str(tmp_path)]) == 0
    out = tmp_path / "sample_the-scream.png"
    assert out.is_file() and (tmp_path / "sample_the-scream-compare.png").is_file()
    assert str(out) in capsys.readouterr().out
    x = np.asarray(Image.open(SAMPLE).convert("RGB"))
    y = np.asarray(Image.open(out).convert("RGB"))
    assert y.shape == x.shape
    assert np.abs(y.astype(np.int16) - x.astype(np.int16)).mean() > 25
