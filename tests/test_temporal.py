"""The temporal regulariser (Wang et al. 2020), --init-from, and the warping-error metric."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import skimage_photo
from helpers_checkpoints import random_resnet50, save_madry_checkpoint
from PIL import Image
from server_fixtures import export_tiny

from robust_style.transformer_net import TransformerNet, TransformerNetConfig, load_style_model
from robust_style.transformer_net.config import TrainConfig
from robust_style.transformer_net.temporal import (
    TemporalConfig,
    random_affine,
    temporal_loss,
    warp,
)
from robust_style.transformer_net.train import train
from robust_style.video.warping import synthetic_clip, warp_frame, warping_error


def batch(n: int = 2, side: int = 48) -> torch.Tensor:
    imgs = [np.asarray(Image.fromarray(skimage_photo(name)).resize((side, side)))
            for name in ("astronaut", "coffee")[:n]]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0


def test_identity_motion_and_an_equivariant_network_cost_nothing() -> None:
    x = batch()
    theta = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]).repeat(2, 1, 1)
    moved, inside = warp(x, theta)
    assert torch.allclose(moved, x, atol=1e-5) and bool(inside.all())
    cfg = TemporalConfig(1.0, noise_std=0.0)
    g = torch.Generator().manual_seed(0)
    # A per-pixel linear colour map commutes with any motion (and bilinear sampling): ~0.
    colour = torch.nn.Conv2d(3, 3, 1)
    torch.nn.init.uniform_(colour.weight, 0.0, 0.5)
    with torch.no_grad():
        assert float(temporal_loss(colour, x, colour(x), cfg, generator=g)) < 1e-10
    # A random style network does not: positive loss, with gradients for its weights.
    torch.manual_seed(0)
    net = TransformerNet(TransformerNetConfig((8, 16, 32), 1))
    loss = temporal_loss(net, x, net(x), cfg, generator=g)
    assert float(loss) > 1e-5
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_random_motion_stays_within_its_bounds() -> None:
    cfg = TemporalConfig(1.0, max_shift=0.05, max_rotate=3.0, max_zoom=0.1)
    theta = random_affine(500, cfg, generator=torch.Generator().manual_seed(1))
    assert theta[:, :, 2].abs().max() <= 0.1 + 1e-6  # 5 % of the side = 0.1 in [-1, 1]
    det = torch.linalg.det(theta[:, :, :2])
    assert float(det.min()) >= 1 / 1.1 ** 2 - 1e-6 and float(det.max()) <= 1 / 0.9 ** 2 + 1e-6


def test_train_with_temporal_weight_fine_tunes_an_exported_model(tmp_path: Path,
                                                                 photo_dir: Path) -> None:
    ort = pytest.importorskip("onnxruntime")

    src = export_tiny(tmp_path / "tiny.onnx", "tiny", seed=7)
    ckpt = save_madry_checkpoint(tmp_path / "r.pt", random_resnet50(seed=5))
    style = tmp_path / "rocket.png"
    Image.fromarray(skimage_photo("rocket")).save(style)
    common = dict(style=str(style), content=str(photo_dir), backbone="robust-resnet50",
                  backbone_weights=str(ckpt), image_size=48, batch_size=2, workers=0,
                  log_interval=1, sample_interval=0, max_steps=2, lr=1e-12,
                  init_from=str(src), compile="off")
    with_t = train(TrainConfig(out=str(tmp_path / "t"), temporal_weight=1e3, **common))
    rows = list(csv.DictReader((with_t.run_dir / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2] and all(float(r["temporal"]) > 0
                                                            for r in rows)
    # Started from the ONNX file's network (lr ~0 keeps it): same output as ONNX Runtime's.
    net = load_style_model(with_t.run_dir).net
    assert net.config.channels == (8, 16, 32)
    img = np.asarray(Image.fromarray(skimage_photo("chelsea")).resize((64, 48)))
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    expected = sess.run(None, {sess.get_inputs()[0].name: img[None]})[0][0].astype(float)
    with torch.no_grad():
        got = net(torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255)[0]
    assert np.abs(got.permute(1, 2, 0).numpy() * 255 - expected).max() <= 1.0
    plain = train(TrainConfig(out=str(tmp_path / "p"), **common))
    header = (plain.run_dir / "log.csv").open().readline()
    assert "temporal" not in header


def test_warping_error_is_zero_for_the_motion_itself_and_sees_flicker() -> None:
    clip = synthetic_clip(skimage_photo("chelsea"), frames=6, size=(96, 64), motion="pan")
    assert warping_error(clip.frames, clip.maps) < 1e-12  # whole-pixel motion: exact
    affine = synthetic_clip(skimage_photo("chelsea"), frames=6, size=(96, 64), motion="affine")
    base = warping_error(affine.frames, affine.maps)
    assert base < 2e-3  # only bilinear resampling differs
    rng = np.random.default_rng(0)
    flicker = [np.clip(f.astype(int) + rng.integers(-20, 21, 3), 0, 255).astype(np.uint8)
               for f in affine.frames]  # a colour shift per frame
    assert warping_error(flicker, affine.maps) > base + 5e-4
    # The mask leaves out what came from outside the frame.
    _, inside = warp_frame(affine.frames[0], affine.maps[0])
    assert 0.8 < inside.mean() < 1.0


def test_evaluate_video_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from robust_style.cli import main

    a = export_tiny(tmp_path / "a.onnx", "tiny", seed=1)
    b = export_tiny(tmp_path / "b.onnx", "tiny", seed=2)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage_photo("chelsea")).save(photos / "chelsea.png")
    assert main(["evaluate", "--video", str(a), str(b), "--photos", str(photos), "--frames",
                 "3", "--no-progress", "--out", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "tiny (a.onnx)" in out and "chelsea-pan" in out and "chelsea-affine" in out
    rows = list(csv.DictReader((tmp_path / "eval" / "video_scores.csv").open()))
    assert len(rows) == 4
    for r in rows:
        assert float(r["warping_error"]) > float(r["input_warping_error"]) >= 0
        assert float(r["fps"]) > 0
    assert main(["evaluate", str(a), "--photos", str(photos)]) == 2  # no --artwork


def test_real_clip_flow_is_estimated_and_scored(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    from test_video import make_clip, moving_frames

    from robust_style.evaluate.video import evaluate_video
    from robust_style.video.flow import estimate_map

    frames = moving_frames(3)  # a photo panning by 3 px a frame
    sx, sy, valid = estimate_map(frames[0], frames[1])
    ys, xs = np.mgrid[0:frames[0].shape[0], 0:frames[0].shape[1]]
    assert abs(float(np.median((sx - xs)[valid])) - 3.0) < 0.3
    assert abs(float(np.median((sy - ys)[valid]))) < 0.3 and valid.mean() > 0.7
    clip = make_clip(tmp_path / "pan.mp4", n=5, audio=False)
    model = export_tiny(tmp_path / "a.onnx", "tiny", seed=1)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage_photo("chelsea")).save(photos / "chelsea.png")
    scores = evaluate_video([model], photos, frames=4, motions=("pan",), real_clips=[clip],
                            progress=False)
    real = [s for s in scores if s.clip == "pan-flow"]
    assert len(scores) == 2 and len(real) == 1 and real[0].frames == 4
    assert real[0].input_warping_error < 2e-3
    assert real[0].warping_error > real[0].input_warping_error
