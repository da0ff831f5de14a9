"""`robust-style train`: real runs on real photos (CPU, tiny sizes, a handful of steps)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers_checkpoints import random_resnet50, save_madry_checkpoint
from PIL import Image

from robust_style.cli import main
from robust_style.perceptual.checkpoint import load_checkpoint
from robust_style.transformer_net import load_style_model
from robust_style.transformer_net.config import TrainConfig
from robust_style.transformer_net.train import train

FAST = dict(image_size=64, batch_size=2, workers=0, log_interval=1, seed=3)


def read_log(run: Path) -> list[dict[str, str]]:
    with (run / "log.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def robust_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("robust") / "madry-l2.pt"
    return save_madry_checkpoint(path, random_resnet50(seed=5))


@pytest.fixture(scope="module")
def style_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real painting when ../shared is there, else a real photo used as the 'artwork'."""
    from conftest import STYLES, skimage_photo

    painting = STYLES / "udnie.jpg"
    if painting.is_file():
        return painting
    path = tmp_path_factory.mktemp("style") / "rocket.png"
    Image.fromarray(skimage_photo("rocket")).save(path)
    return path


def test_robust_resnet50_run_writes_checkpoints_samples_and_log(
        tmp_path: Path, photo_dir: Path, robust_ckpt: Path, style_image: Path) -> None:
    run = tmp_path / "run"
    code = main(["train", "--style", str(style_image), "--content", str(photo_dir),
                 "--backbone", "robust-resnet50", "--backbone-weights", str(robust_ckpt),
                 "--out", str(run), "--image-size", "64", "--batch-size", "2", "--max-steps", "4",
                 "--checkpoint-interval", "2", "--sample-interval", "2", "--log-interval", "1",
                 "--workers", "0"])
    assert code == 0
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == [
        "step-00000002.pt", "step-00000004.pt"]
    samples = sorted(p.name for p in (run / "samples").glob("*.png"))
    assert "step-00000002.png" in samples and "step-00000004-grid.png" in samples
    grid = Image.open(run / "samples" / "step-00000004-grid.png")
    assert grid.width > 2 * grid.height  # content | style | result
    rows = read_log(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(float(r["style"]) > 0 and float(r["content"]) >= 0 for r in rows)
    model = load_style_model(run)
    meta = model.meta
    assert meta["steps"] == 4 and meta["backbone"] == "robust-resnet50"
    assert len(meta["backbone_sha256"]) == 64 and len(meta["style_image_sha256"]) == 64
    # 'auto' loss weights were balanced on the first batch and recorded as numbers.
    assert all(isinstance(meta["config"][k], float) for k in
               ("content_weight", "style_weight", "tv_weight"))
    state = load_checkpoint(run / "checkpoints" / "step-00000004.pt")
    assert {"optimizer", "rng", "step", "train_config"} <= set(state)


def test_shared_vgg16_run_and_style_loss_goes_down(tmp_path: Path, photo_dir: Path,
                                                   shared_vgg16: Path, shared_style: Path) -> None:
    run = tmp_path / "vgg"
    cfg = TrainConfig(style=str(shared_style), content=str(photo_dir), out=str(run),
                      backbone="vgg16-caffe", backbone_weights=str(shared_vgg16), max_steps=40,
                      lr=5e-3, checkpoint_interval=20, sample_interval=20, style_size=96,
                      **FAST)
    result = train(cfg)
    assert result.steps == 40 and result.style_model.is_file()
    style = [float(r["style"]) for r in read_log(run)]
    first, last = sum(style[:8]) / 8, sum(style[-8:]) / 8
    assert last < 0.7 * first, f"style loss did not go down: {first:.4g} -> {last:.4g}"
    assert (run / "samples" / "step-00000040-grid.png").is_file()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_continues_step_count_and_losses(tmp_path: Path, photo_dir: Path,
                                                robust_ckpt: Path, style_image: Path,
                                                precision: str) -> None:
    common = dict(style=str(style_image), content=str(photo_dir), backbone="robust-resnet50",
                  backbone_weights=str(robust_ckpt), checkpoint_interval=3, sample_interval=0,
                  precision=precision, **FAST)
    straight = train(TrainConfig(out=str(tmp_path / "a"), max_steps=6, **common))
    first = train(TrainConfig(out=str(tmp_path / "b"), max_steps=3, **common))
    assert first.steps == 3
    resumed = train(TrainConfig(style="", content="", out=str(tmp_path / "b")), resume=True,
                    overrides={"max_steps": 6})
    assert resumed.steps == 6
    a, b = read_log(straight.run_dir), read_log(resumed.run_dir)
    assert [int(r["step"]) for r in b] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(a, b, strict=True):
        for key in ("content", "style", "tv"):
            assert float(rb[key]) == pytest.approx(float(ra[key]), rel=1e-4), (ra, rb)
    # Same weights at the end: the resumed run is the uninterrupted run.
    wa = load_style_model(straight.run_dir).net.state_dict()
    wb = load_style_model(resumed.run_dir).net.state_dict()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-5) for k in wa)


def test_sigkill_mid_run_resumes_from_last_checkpoint(tmp_path: Path, photo_dir: Path,
                                                      robust_ckpt: Path, style_image: Path) -> None:
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "robust_style", "train", "--style", str(style_image),
           "--content", str(photo_dir), "--backbone", "robust-resnet50", "--backbone-weights",
           str(robust_ckpt), "--out", str(run), "--image-size", "64", "--batch-size", "2",
           "--max-steps", "200", "--checkpoint-interval", "2", "--sample-interval", "0",
           "--log-interval", "1", "--workers", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if len(list((run / "checkpoints").glob("step-*.pt"))) >= 2:
                break
            if proc.poll() is not None:
                pytest.fail("training exited before it was killed")
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoints appeared")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    ckpts = sorted((run / "checkpoints").glob("step-*.pt"))
    last = ckpts[-1]
    for path in ckpts:  # never a corrupt checkpoint, even killed mid-write
        load_checkpoint(path)
    last_step = int(last.stem.split("-")[1])
    code = main(["train", "--out", str(run), "--resume", "--max-steps", str(last_step + 2)])
    assert code == 0
    steps = [int(r["step"]) for r in read_log(run)]
    assert steps == list(range(1, last_step + 3))
    assert load_style_model(run).meta["steps"] == last_step + 2


def test_corrupt_images_are_skipped_with_a_warning(tmp_path: Path, photo_dir: Path,
                                                   robust_ckpt: Path, style_image: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    content = tmp_path / "mixed"
    content.mkdir()
    good = sorted(photo_dir.rglob("*.jpg"))[:3]
    for p in good:
        (content / p.name).write_bytes(p.read_bytes())
    (content / "not-an-image.png").write_text("hello")
    data = good[0].read_bytes()
    (content / "truncated.jpg").write_bytes(data[: len(data) // 3])
    cfg = TrainConfig(style=str(style_image), content=str(content), out=str(tmp_path / "r"),
                      backbone="robust-resnet50", backbone_weights=str(robust_ckpt), max_steps=2,
                      sample_interval=0, **{**FAST, "batch_size": 3})
    with caplog.at_level("WARNING"):
        assert train(cfg).steps == 2
    text = caplog.text
    assert "not-an-image.png" in text and "truncated.jpg" in text


@pytest.mark.parametrize("extra, message", [
    (["--style", "{tmp}/missing.jpg"], "style image not found"),
    (["--content", "{tmp}/missing-dir"], "content folder not found"),
    (["--content", "{tmp}/empty"], "usable image"),
    (["--backbone-weights", "{tmp}/missing.pt"], "not found"),
    (["--backbone", "googlenet"], "unknown backbone"),
    (["--precision", "fp16", "--device", "cpu"], "fp16 needs CUDA"),
    (["--image-size", "4"], "--image-size must be >= 16"),
    (["--resume"], "no checkpoint"),
])
def test_bad_arguments_give_one_line_errors(tmp_path: Path, photo_dir: Path, robust_ckpt: Path,
                                            style_image: Path, extra: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    args = {"--style": str(style_image), "--content": str(photo_dir),
            "--backbone": "robust-resnet50", "--backbone-weights": str(robust_ckpt),
            "--out": str(tmp_path / "run"), "--max-steps": "1", "--workers": "0"}
    flags = [f for f in extra if f == "--resume"]
    pairs = [f for f in extra if f != "--resume"]
    for flag, value in zip(pairs[::2], pairs[1::2], strict=True):
        args[flag] = value.format(tmp=tmp_path)
    argv = ["train", *[x for kv in args.items() for x in kv], *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("robust-style: error")]
    assert len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "run" / "style_model.pt").exists()


def test_bad_argument_from_the_console_is_one_line_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "robust_style", "train", "--style",
                           str(tmp_path / "nope.jpg"), "--content", str(tmp_path), "--out",
                           str(tmp_path / "run"), "--backbone", "vgg16"], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("robust-style: error: style image")
    assert "Traceback" not in proc.stderr


def test_existing_run_is_not_overwritten(tmp_path: Path, photo_dir: Path, robust_ckpt: Path,
                                         style_image: Path) -> None:
    cfg = TrainConfig(style=str(style_image), content=str(photo_dir), out=str(tmp_path / "r"),
                      backbone="robust-resnet50", backbone_weights=str(robust_ckpt), max_steps=1,
                      sample_interval=0, **FAST)
    train(cfg)
    before = (tmp_path / "r" / "style_model.pt").read_bytes()
    with pytest.raises(Exception, match="already holds a run"):
        train(cfg)
    assert (tmp_path / "r" / "style_model.pt").read_bytes() == before


def test_torchrun_two_processes_gloo(tmp_path: Path, photo_dir: Path, robust_ckpt: Path,
                                     style_image: Path) -> None:
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "robust_style", "train", "--style", str(style_image), "--content",
           str(photo_dir), "--backbone", "robust-resnet50", "--backbone-weights",
           str(robust_ckpt), "--out", str(run), "--image-size", "64", "--batch-size", "1",
           "--max-steps", "3", "--checkpoint-interval", "2", "--sample-interval", "0",
           "--log-interval", "1", "--workers", "0", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_log(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    # Two processes x batch 1 = 2 images per step: epoch advances by 2/len(dataset).
    assert float(rows[0]["epoch"]) > 0
    model = load_style_model(run)
    assert model.meta["steps"] == 3
