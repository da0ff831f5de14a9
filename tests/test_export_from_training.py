"""A real `robust-style train` run (2 steps, shared VGG-16) exported with `robust-style export`.

The other export tests make their short-trained network themselves; this one checks the
hand-over from training: the run folder exports, and what training recorded arrives in
the ONNX metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from conftest import skimage_photo

from robust_style.cli import main
from robust_style.contract import INPUT_NAME, parse_metadata
from robust_style.export.onnx_export import ServingWrapper
from robust_style.transformer_net import load_style_model


def test_real_training_run_exports(tmp_path: Path, shared_vgg16: Path, shared_style: Path,
                                   photo_dir: Path) -> None:
    run = tmp_path / "runs" / "scream"
    assert main(["-q", "train", "--style", str(shared_style), "--content", str(photo_dir),
                 "--out", str(run), "--backbone", "vgg16-caffe",
                 "--backbone-weights", str(shared_vgg16), "--image-size", "64",
                 "--batch-size", "2", "--max-steps", "2", "--name", "scream"]) == 0
    out = tmp_path / "scream.onnx"
    assert main(["-q", "export", str(run), "-o", str(out), "--verify-sizes", "1x37x53"]) == 0

    style = load_style_model(run)
    md = parse_metadata({p.key: p.value for p in onnx.load(str(out)).metadata_props})
    assert md.name == "scream" and md.steps == 2 and md.backbone == "vgg16-caffe"
    assert md.style_image_sha256 == style.meta["style_image_sha256"] != ""
    assert md.backbone_sha256 == style.meta["backbone_sha256"] != ""
    assert dict(md.config) == json.loads(json.dumps(style.meta["config"], default=str))

    photo = np.asarray(skimage_photo("coffee")[:37, :53])[None].copy()
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {INPUT_NAME: photo})[0]
    with torch.no_grad():
        ref = ServingWrapper(style.net)(torch.from_numpy(photo)).numpy()
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1

