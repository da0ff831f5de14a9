"""`robust-style evaluate` and its judges, with the real networks of ../shared.

The bundled style (the-scream.onnx) is the model under test where a trained one is
needed: judged against its own painting and against another (udnie), the judges must
say it is nearer its own.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED, need_shared, skimage_photo
from PIL import Image

from robust_style.cli import main
from robust_style.errors import UserError
from robust_style.evaluate import EvalConfig, Judges, JudgeWeights, evaluate, write_outputs
from robust_style.evaluate.judges import LpipsJudge
from robust_style.evaluate.weights import _lpips_package_file
from robust_style.perceptual.weights import load_registry
from robust_style.perceptual.weights.store import import_file
from robust_style.transformer_net import TransformerNet, TransformerNetConfig
from robust_style.transformer_net.artifact import save_style_model

BUNDLED = Path(__file__).resolve().parents[1] / "src" / "robust_style" / "models" / "the-scream.onnx"
#: The LPIPS repository's example patches (richzhang/PerceptualSimilarity, imgs/, BSD-2).
PATCHES = Path(os.environ.get("ROBUST_STYLE_LPIPS_PATCHES", SHARED / "images" / "lpips"))
SMALL = {"size": 96, "judge_size": 96}


@pytest.fixture(scope="module")
def lpips_lin() -> Path:
    sha = load_registry()["lpips-alex-v0.1"].sha256
    path = _lpips_package_file(sha)
    assert path is not None, "the lpips package must ship the registered alex.pth"
    return path


@pytest.fixture(scope="module")
def judge_weights(shared_vgg19: Path, shared_alexnet: Path, lpips_lin: Path) -> JudgeWeights:
    return JudgeWeights(vgg19=shared_vgg19, alexnet=shared_alexnet, lpips=lpips_lin)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("heldout")
    # Photos the bundled model was not trained on (docs/bundled-model.md).
    for name in ("chelsea", "hubble_deep_field", "immunohistochemistry", "camera", "coins"):
        Image.fromarray(skimage_photo(name)).save(out / f"{name}.png")
    return out


@pytest.fixture()
def judge_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_vgg19: Path,
               shared_alexnet: Path) -> Path:
    """A weights cache holding the judges, imported through the registry's checks."""
    home = tmp_path / "home"
    reg = load_registry()
    import_file(reg["vgg19-caffe"], shared_vgg19, home=home, link=True)
    import_file(reg["alexnet-features"], shared_alexnet, home=home, link=True)
    monkeypatch.setenv("ROBUST_STYLE_HOME", str(home))
    return home


def test_lpips_reproduces_the_official_example_distances(shared_alexnet: Path,
                                                         lpips_lin: Path) -> None:
    files = [need_shared(PATCHES / f"{n}.png", f"the LPIPS example patch {n}.png (or set "
                         "ROBUST_STYLE_LPIPS_PATCHES)") for n in ("ex_ref", "ex_p0", "ex_p1")]
    judge = LpipsJudge(shared_alexnet, lpips_lin)
    ref, p0, p1 = (torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1)
                   [None].float() / 255.0 for f in files)
    assert (round(judge.distance(ref, p0), 3), round(judge.distance(ref, p1), 3)) == (0.722, 0.138)


def test_shared_lpips_layers_are_the_official_ones(shared_lpips_lin: Path, lpips_lin: Path
                                                   ) -> None:
    a = torch.load(shared_lpips_lin, weights_only=True)
    b = torch.load(lpips_lin, weights_only=True, map_location="cpu")
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_lpips_separates_a_random_backbone(shared_alexnet: Path, lpips_lin: Path,
                                           tmp_path: Path) -> None:
    """A photo vs. a blurred copy: the real AlexNet sees the loss of detail, a random
    AlexNet barely does (the shared README's check, on another pair)."""
    from torchvision.models import alexnet

    torch.manual_seed(0)
    rand = tmp_path / "random-alexnet.pt"
    torch.save(alexnet(weights=None).features.state_dict(), rand)
    photo = torch.from_numpy(skimage_photo("astronaut")[::4, ::4].copy()).permute(2, 0, 1)[None]
    photo = photo.float() / 255.0
    blurred = torch.nn.functional.avg_pool2d(photo, 5, 1, 2, count_include_pad=False)
    real = LpipsJudge(shared_alexnet, lpips_lin).distance(photo, blurred)
    random = LpipsJudge(rand, lpips_lin).distance(photo, blurred)
    assert real > 0.1 and real > 3 * random


@pytest.mark.slow
def test_judges_discriminate_and_a_photo_has_content_distance_zero(
        judge_weights: JudgeWeights, photos: Path, shared_style: Path,
        shared_udnie: Path) -> None:
    own = evaluate(EvalConfig((BUNDLED,), shared_style, photos, size=160, judge_size=160,
                              progress=False), weights=judge_weights)
    other = evaluate(EvalConfig((BUNDLED,), shared_udnie, photos, size=160, judge_size=160,
                                progress=False), weights=judge_weights)
    assert own.photos == other.photos and len(own.rows) == 5
    for judge, most in (("style_vgg19", 4), ("style_alexnet", 3)):
        nearer = [a.score(judge) < b.score(judge) for a, b in zip(own.rows, other.rows,
                                                                   strict=True)]
        # AlexNet is the noisier judge (docs/quality.md): a majority, and on average.
        assert sum(nearer) >= most, (judge, nearer)
        assert own.mean("the-scream", judge) < other.mean("the-scream", judge)
    # The same result images are compared, so the content judge agrees across artworks.
    for a, b in zip(own.rows, other.rows, strict=True):
        assert a.content_lpips == pytest.approx(b.content_lpips, abs=1e-6)
        assert 0.05 < a.content_lpips < 1.0 and a.ms > 0

    photo = torch.from_numpy(skimage_photo("coffee")[::4, ::4].copy()).permute(2, 0, 1)
    photo = photo[None].float() / 255.0
    judges = Judges(photo, weights=judge_weights, judge_size=96)  # the photo as "artwork"
    same = judges.score(photo, photo)
    assert same == {"style_vgg19": 0.0, "style_alexnet": 0.0, "content_lpips": 0.0}
    mirrored = judges.score(photo, photo.flip(-1))
    assert all(0 < mirrored[k] < 0.5 for k in same), mirrored
    # A photo left unchanged is far from a painting's texture.
    assert min(r.style_vgg19 for r in other.rows) > 0.05


def _tiny_run(run: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    net = TransformerNet(TransformerNetConfig((8, 16, 32), 1))
    meta = {"name": f"tiny{seed}", "backbone": "vgg16-caffe", "steps": 0,
            "config": {"content": str(run.parent / "train-photos")}}
    save_style_model(run / "style_model.pt", net, meta)
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_style_model(run / "checkpoints" / "step-00000001.pt", net, meta, kind="checkpoint")
    return run


def test_evaluate_onnx_runs_and_checkpoints_cli(judge_home: Path, photos: Path,
                                                shared_style: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run = _tiny_run(tmp_path / "runs" / "a", 1)
    onnx_out = tmp_path / "a.onnx"
    assert main(["-q", "export", str(run), "-o", str(onnx_out)]) == 0
    out = tmp_path / "eval"
    code = main(["-q", "evaluate", str(BUNDLED), str(run), str(onnx_out),
                 str(run / "checkpoints" / "step-00000001.pt"), "--artwork", str(shared_style),
                 "--photos", str(photos), "--max-photos", "2", "--size", "64",
                 "--judge-size", "64", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0, text
    with (out / "scores.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["model"] for r in rows} == {"the-scream", "tiny1", "tiny1#2", "tiny1#3"}
    assert len(rows) == 8
    by = {(r["model"], r["photo"]): r for r in rows}
    for photo in ("camera.png", "chelsea.png"):
        torch_run, exported = by[("tiny1", photo)], by[("tiny1#2", photo)]
        for judge in ("style_vgg19", "style_alexnet", "content_lpips"):
            # the same network through PyTorch and through ONNX Runtime
            assert float(torch_run[judge]) == pytest.approx(float(exported[judge]), abs=2e-3)
        assert by[("tiny1#3", photo)]["style_vgg19"] == torch_run["style_vgg19"]
    md = (out / "scores.md").read_text()
    assert "| the-scream |" in md and "style VGG-19" in md
    grid = Image.open(out / "grid.png")
    assert grid.width > 4 * 64 and grid.height > 3 * 64
    assert "the-scream" in text and "mean over photos" in text


def test_evaluate_result_writes_outputs(judge_weights: JudgeWeights, photos: Path,
                                        shared_style: Path, tmp_path: Path) -> None:
    result = evaluate(EvalConfig((BUNDLED,), shared_style, photos, max_photos=1,
                                 judges=("content_lpips",), progress=False, **SMALL),
                      weights=judge_weights)
    row = result.rows[0]
    assert np.isnan(row.style_vgg19) and np.isnan(row.style_alexnet) and row.content_lpips > 0
    paths = write_outputs(result, tmp_path / "o")
    assert "—" in paths["markdown"].read_text()
    assert Image.open(paths["grid"]).format == "PNG"


def _err(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("robust-style: error: ") and err.count("\n") == 1, err
    return err


def test_bad_input_is_one_line_exit_2(tmp_path: Path, photos: Path, shared_style: Path,
                                      judge_home: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    base = ["evaluate", str(BUNDLED), "--no-progress"]
    assert "artwork not found" in _err(capsys, [*base, "--artwork", str(tmp_path / "no.jpg"),
                                                "--photos", str(photos)])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images" in _err(capsys, [*base, "--artwork", str(shared_style),
                                        "--photos", str(empty)])
    assert "image folder not found" in _err(capsys, [*base, "--artwork", str(shared_style),
                                                     "--photos", str(tmp_path / "nope")])
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not an onnx file")
    assert "cannot load style model" in _err(capsys, ["evaluate", str(bad), "--artwork",
                                                      str(shared_style), "--photos", str(photos)])
    badpt = tmp_path / "broken.pt"
    badpt.write_bytes(b"\x80\x02garbage")
    _err(capsys, ["evaluate", str(badpt), "--artwork", str(shared_style), "--photos",
                  str(photos)])
    assert "style model not found" in _err(capsys, ["evaluate", str(tmp_path / "x.onnx"),
                                                    "--artwork", str(shared_style),
                                                    "--photos", str(photos)])
    assert "unknown judge" in _err(capsys, [*base, "--artwork", str(shared_style), "--photos",
                                            str(photos), "--judges", "psnr"])


def test_missing_judge_weights_say_how_to_get_them(tmp_path: Path, photos: Path,
                                                   shared_style: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ROBUST_STYLE_HOME", str(tmp_path / "empty-home"))
    err = _err(capsys, ["evaluate", str(BUNDLED), "--artwork", str(shared_style), "--photos",
                        str(photos), "--no-progress"])
    assert "VGG-19" in err and "robust-style weights" in err
    with pytest.raises(UserError, match="AlexNet"):
        JudgeWeights().require("alexnet")
