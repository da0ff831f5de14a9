"""``robust-style stylize --model``: local stylisation on the server's code, no server.

Real exported models, real photos; the local result is compared pixel for pixel with what
a real server (same engine and precision) answers for the same file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pixels import assert_pixels_close
from server_fixtures import decode, encode, photo

from robust_style.cli import main
from robust_style.server.app import ServerConfig, StyleServer
from robust_style.server.batching import BatchConfig
from robust_style.server.client import StyleClient
from robust_style.server.engines import EngineConfig
from robust_style.server.registry import RegistryConfig

FP32_ORT = ["--engine", "onnxruntime", "--precision", "fp32"]


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    (d / "cat.jpg").write_bytes(encode(photo("chelsea", 90), "JPEG", quality=95))
    (d / "coffee.png").write_bytes(encode(photo("coffee", 77)))
    return d


def test_local_file_gives_the_servers_pixels(models_dir: Path, photos: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(["stylize", str(photos), "--model", str(models_dir / "tiny.onnx"), "-o",
                 str(out), *FP32_ORT])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["cat_tiny.png", "coffee_tiny.png"]
    local = np.asarray(Image.open(out / "cat_tiny.png").convert("RGB"))

    engine = EngineConfig(engine="onnxruntime", precision="fp32")
    reg = RegistryConfig(models_dir=models_dir, engine=engine, batch=BatchConfig(max_batch=1),
                         poll_seconds=0.0)
    server = StyleServer(ServerConfig(registry=reg, port=0, metrics_port=None)).start()
    try:
        assert server.wait_ready(60)
        with StyleClient(server.address) as client:
            remote = decode(client.stylize(photos / "cat.jpg", "tiny").image)
    finally:
        server.stop(0)
    assert local.shape == remote.shape == (60, 90, 3)
    np.testing.assert_array_equal(local, remote)
    assert np.abs(local.astype(int) - photo("chelsea", 90)).mean() > 10  # really stylised


def test_local_folder_of_models_and_options(models_dir: Path, photos: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = ["stylize", str(photos / "cat.jpg"), "--model", str(models_dir), "-o", str(out)]
    assert main(args) == 2
    assert "--style is needed; --model has: tiny, tiny2" in capsys.readouterr().err
    assert main([*args, "--style", "tiny2", "--format", "jpeg", "--max-side", "45",
                 "--preserve-color", "--strength", "0.5"]) == 0
    img = Image.open(out / "cat_tiny2.jpg")
    assert img.format == "JPEG" and img.size == (45, 30)


def test_local_errors_are_one_line(models_dir: Path, photos: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    cat = str(photos / "cat.jpg")
    cases = [
        (["--model", str(tmp_path / "missing.onnx")], "no such model file or folder"),
        (["--model", str(models_dir / "tiny.onnx"), "--server", "localhost:1"],
         "not both"),
        (["--model", str(models_dir / "tiny.onnx"), "--style", "nope"], "unknown style 'nope'"),
    ]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.onnx").write_bytes(b"not a model" * 30)
    cases.append((["--model", str(broken / "bad.onnx")], "cannot load bad.onnx"))
    cases.append((["--model", str(broken)], "no loadable style model"))
    for extra, message in cases:
        assert main(["stylize", cat, "-o", str(out), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err

    # one bad image among good ones: reported, the others written, exit 1
    (photos / "fake.png").write_bytes(b"not an image")
    assert main(["stylize", str(photos), "--model", str(models_dir / "tiny.onnx"), "-o",
                 str(out)]) == 1
    captured = capsys.readouterr()
    assert "fake.png" in captured.err and "2 image(s)" in captured.out and "1 failed" in \
        captured.out


def test_bundled_style_locally_without_the_train_extra(tmp_path: Path) -> None:
    from test_install import TRAIN_ONLY, run_without

    src = Path(__file__).resolve().parents[1] / "src" / "robust_style" / "models"
    shutil.copy(src / "sample.jpg", tmp_path / "sample.jpg")
    proc = run_without(TRAIN_ONLY, "stylize", "sample.jpg", "--model",
                       str(src / "the-scream.onnx"), "-o", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LEAKED []" in proc.stdout
    assert (tmp_path / "out" / "sample_the-scream.png").stat().st_size > 10_000


def test_video_locally_matches_the_server(models_dir: Path, tmp_path: Path) -> None:
    """A clip through --model and through a server (same engine): the same frames.

    Frames are compared as PNGs (``--frames``): a re-encoded H.264 file is not bit-exact
    from run to run (the encoder's threads), the stylised frames are.
    """
    pytest.importorskip("av")
    from PIL import Image
    from test_video import make_clip

    clip = make_clip(tmp_path / "clip.mp4", n=4, audio=False)
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert main(["stylize", str(clip), "--model", str(models_dir / "tiny.onnx"), "--frames",
                 "-o", str(local), *FP32_ORT]) == 0
    engine = EngineConfig(engine="onnxruntime", precision="fp32")
    reg = RegistryConfig(models_dir=models_dir, engine=engine, batch=BatchConfig(max_batch=1),
                         poll_seconds=0.0)
    server = StyleServer(ServerConfig(registry=reg, port=0, metrics_port=None)).start()
    try:
        assert server.wait_ready(60)
        assert main(["stylize", str(clip), "--style", "tiny", "--server", server.address,
                     "--frames", "-o", str(remote)]) == 0
    finally:
        server.stop(0)

    def frames(folder: Path) -> np.ndarray:
        files = sorted((folder / "clip_tiny").glob("*.png"))
        return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])

    a, b = frames(local), frames(remote)
    assert a.shape == b.shape and a.shape[0] == 4
    assert_pixels_close(a, b, "frames local vs server")  # batches may differ: <= 1 LSB
