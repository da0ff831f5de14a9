"""Several artworks in one network and a new artwork by its norms alone (issue 26).

Real runs on real photos with the shared Caffe VGG-16 (tiny sizes, a few steps):
``train --style A --style B`` gives one multi-style network (conditional instance norm,
Dumoulin et al. 2017); ``export --style`` / ``--blend`` give ordinary single-style ONNX
files; ``adapt`` trains only the norms of a base; bad input is one line and exit 2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import skimage_photo

from robust_style.cli import main
from robust_style.contract import INPUT_NAME
from robust_style.export.onnx_export import ServingWrapper
from robust_style.perceptual.checkpoint import load_checkpoint
from robust_style.transformer_net import load_style_model
from robust_style.transformer_net.artifact import resolve_style_source
from robust_style.transformer_net.model import (
    TransformerNet,
    TransformerNetConfig,
    make_multistyle,
    norm_keys,
    set_style,
)


def _tiny(vgg16: Path, photos: Path) -> list[str]:
    return ["--content", str(photos), "--backbone", "vgg16-caffe", "--backbone-weights",
            str(vgg16), "--image-size", "48", "--batch-size", "2", "--workers", "0",
            "--lr", "1e-2", "--sample-interval", "2", "--checkpoint-interval", "2"]


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory, shared_vgg16: Path, shared_style: Path,
             shared_udnie: Path, photo_dir: Path) -> Path:
    run = tmp_path_factory.mktemp("multi") / "base"
    assert main(["-q", "train", "--style", str(shared_style), "--style", str(shared_udnie),
                 "--out", str(run), "--max-steps", "4", *_tiny(shared_vgg16, photo_dir)]) == 0
    return run


def _multi_net(run: Path) -> tuple[TransformerNet, list[str]]:
    """The run's network as trained: every style's norms, not one picked."""
    obj = load_checkpoint(resolve_style_source(run))
    net = make_multistyle(TransformerNet(TransformerNetConfig.from_dict(obj["net_config"])),
                          len(obj["meta"]["styles"]))
    net.load_state_dict(obj["state_dict"])
    return net.eval(), list(obj["meta"]["styles"])


def _onnx(path: Path, photo: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT_NAME: photo})[0]


def test_multistyle_run_samples_each_style_and_exports_each_with_the_runs_pixels(
        base_run: Path, tmp_path: Path) -> None:
    samples = {p.name for p in (base_run / "samples").glob("*.png")}
    assert {"step-00000004-the-scream.png", "step-00000004-udnie-grid.png"} <= samples
    net, names = _multi_net(base_run)
    assert names == ["the-scream", "udnie"]
    photo = np.ascontiguousarray(skimage_photo("coffee")[:61, :83])[None]
    outputs = {}
    for index, name in enumerate(names):
        out = tmp_path / f"{name}.onnx"
        assert main(["-q", "export", str(base_run), "--style", name, "-o", str(out),
                     "--verify-sizes", "1x37x53"]) == 0
        set_style(net, index)
        with torch.no_grad():
            ref = ServingWrapper(net)(torch.from_numpy(photo)).numpy()
        got = _onnx(out, photo)
        assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
        outputs[name] = got
    # the two styles are different networks, sharing every convolution
    assert np.abs(outputs["the-scream"].astype(int) - outputs["udnie"].astype(int)).mean() > 1
    picked = load_style_model(base_run, mix={"udnie": 1.0})
    assert picked.name == "udnie" and picked.meta["style_image"].endswith("udnie.jpg")


def test_blend_interpolates_the_norms_and_lands_between_the_styles(base_run: Path,
                                                                   tmp_path: Path) -> None:
    mix = {"the-scream": 0.7, "udnie": 0.3}
    blend = load_style_model(base_run, mix=mix).net.state_dict()
    a = load_style_model(base_run, mix={"the-scream": 1.0}).net.state_dict()
    b = load_style_model(base_run, mix={"udnie": 1.0}).net.state_dict()
    norms = set(norm_keys(TransformerNet()))
    for key in blend:
        if key in norms:
            torch.testing.assert_close(blend[key], 0.7 * a[key] + 0.3 * b[key])
        else:
            assert torch.equal(blend[key], a[key]) and torch.equal(a[key], b[key])
    out = tmp_path / "blend.onnx"
    assert main(["-q", "export", str(base_run), "--blend", "the-scream:0.7,udnie:0.3",
                 "-o", str(out), "--verify-sizes", "1x37x53"]) == 0
    assert out.is_file()


def test_adapt_changes_only_the_norms_and_resumes(base_run: Path, tmp_path: Path,
                                                  shared_vgg16: Path, photo_dir: Path) -> None:
    from conftest import STYLES

    new = STYLES / "starry-night.jpg"
    run = tmp_path / "adapted"
    args = ["adapt", str(base_run), "--style", str(new), "--out", str(run),
            *_tiny(shared_vgg16, photo_dir)]
    assert main(["-q", *args, "--max-steps", "2"]) == 0
    assert main(["-q", "adapt", str(base_run), "--out", str(run), "--resume",
                 "--max-steps", "4"]) == 0
    adapted = load_style_model(run)
    assert adapted.meta["steps"] == 4 and adapted.meta["config"]["norms_only"] is True
    assert (run / "samples" / "step-00000004-grid.png").is_file()
    start = load_style_model(base_run, mix="mean").net.state_dict()
    after = adapted.net.state_dict()
    norms = set(norm_keys(adapted.net))
    assert len(norms) == 30  # 15 instance norms in Johnson's network, scale and shift
    for key, value in after.items():
        if key in norms:
            assert not torch.equal(value, start[key]), f"{key} did not learn"
        else:
            assert torch.equal(value, start[key]), f"{key} changed: adapt trains norms only"
    learnt = sum(after[k].numel() for k in norms)
    assert learnt == 3200  # the ~3.2 k numbers of Dumoulin et al.'s fine-tuning


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


def test_bad_input_is_one_line_and_exit_2(base_run: Path, tmp_path: Path, shared_vgg16: Path,
                                          shared_style: Path, shared_udnie: Path,
                                          photo_dir: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "x.onnx")
    _one_line_error(capsys, ["export", str(base_run), "-o", out], "2 styles", "--style")
    _one_line_error(capsys, ["export", str(base_run), "--style", "monet", "-o", out],
                    "unknown style 'monet'", "the-scream, udnie")
    _one_line_error(capsys, ["export", str(base_run), "--blend", "the-scream:0.7,udnie:0.2",
                             "-o", out], "sum to 1")
    _one_line_error(capsys, ["export", str(base_run), "--blend", "the-scream:0.7", "-o", out],
                    "at least two")
    _one_line_error(capsys, ["export", str(base_run), "--blend", "the-scream:lots,udnie:1",
                             "-o", out], "NAME:WEIGHT")
    assert not Path(out).exists()
    # a base that is not a style network (the loss network's own weights)
    _one_line_error(capsys, ["adapt", str(shared_vgg16), "--style", str(shared_style),
                             "--out", str(tmp_path / "a1"), *_tiny(shared_vgg16, photo_dir)],
                    "not a robust-style style model")
    # a base of an architecture that is no preset
    odd = TransformerNet(TransformerNetConfig(channels=(8, 8, 8), separable=True, end_kernel=5))
    from robust_style.transformer_net import save_style_model

    save_style_model(tmp_path / "odd.pt", odd, {"name": "odd"})
    _one_line_error(capsys, ["adapt", str(tmp_path / "odd.pt"), "--style", str(shared_style),
                             "--out", str(tmp_path / "a2"), *_tiny(shared_vgg16, photo_dir)],
                    "architecture")
    _one_line_error(capsys, ["adapt", str(base_run), "--style", str(shared_style), "--style",
                             str(shared_udnie), "--out", str(tmp_path / "a3"),
                             *_tiny(shared_vgg16, photo_dir)], "one artwork")
    _one_line_error(capsys, ["train", "--style", str(shared_style), "--style", str(shared_udnie),
                             "--name", "both", "--out", str(tmp_path / "t1"),
                             *_tiny(shared_vgg16, photo_dir)], "--name")
    _one_line_error(capsys, ["train", "--style", str(shared_style), "--style", str(shared_style),
                             "--out", str(tmp_path / "t2"), *_tiny(shared_vgg16, photo_dir)],
                    "same file name")
    for made in ("a1", "a2", "a3", "t1", "t2"):
        assert not (tmp_path / made / "style_model.pt").exists()


def test_adapt_from_a_bundled_style_by_name(tmp_path: Path, shared_vgg16: Path,
                                            shared_udnie: Path, photo_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """After install, the bundled style is a base: ``adapt the-scream ...``; ``-q`` hides
    the progress bar."""
    run = tmp_path / "from-bundled"
    assert main(["-q", "adapt", "the-scream", "--style", str(shared_udnie), "--out", str(run),
                 *_tiny(shared_vgg16, photo_dir), "--image-size", "32", "--max-steps", "1"]) == 0
    err = capsys.readouterr().err
    assert "%|" not in err and "step/s" not in err, err
    adapted = load_style_model(run)
    assert adapted.meta["config"]["init_from"].endswith("the-scream.onnx")
    assert adapted.net.config == TransformerNetConfig()  # the bundled style's network
