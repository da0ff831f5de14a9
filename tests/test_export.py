"""``robust-style export`` end to end on a short-trained default-size network.

Two full exports (fp32 with a Triton entry, fp16) are shared by all tests here; the
failure paths (small network) are in test_export_errors.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import skimage_photo
from onnx import TensorProto

from robust_style import __version__
from robust_style.cli import main
from robust_style.contract import (
    FORMAT,
    INPUT_NAME,
    OUTPUT_NAME,
    TENSOR_CONVENTION,
    parse_metadata,
)
from robust_style.export.fp16 import op_input_types
from robust_style.export.onnx_export import CORE_INPUT, CORE_OUTPUT, ServingWrapper
from robust_style.export.verify import psnr, verify_onnx
from robust_style.transformer_net import (
    TransformerNet,
    TransformerNetConfig,
    load_style_model,
    save_style_model,
)

PHOTOS = ("astronaut", "coffee", "chelsea")
TRAIN_CONFIG = {"image_size": 64, "lr": 5e-3, "batch_size": 1, "content_weight": 1.0,
                "style_weight": 1e5, "tv_weight": 1e-6, "seed": 0, "backbone": "vgg16"}


def fit(photo: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(photo).resize((w, h), Image.Resampling.BILINEAR))


def train_style_model(run_dir: Path, config: TransformerNetConfig | None = None,
                      steps: int = 12, name: str = "test-style") -> Path:
    """A short-trained network: Adam steps towards a recoloured, posterised photo.

    Moves every weight (instance-norm scales and shifts included) away from its
    initialisation, so the export sees a network with realistic, varied outputs.
    """
    torch.manual_seed(0)
    net = TransformerNet(config).train()
    photo = fit(skimage_photo("astronaut"), 64, 64).copy()
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255.0
    target = (x[:, [2, 0, 1]] * 4).round() / 4  # a crude "style": rolled colours, 5 levels
    opt = torch.optim.Adam(net.parameters(), lr=TRAIN_CONFIG["lr"])
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    meta = {
        "name": name, "backbone": "vgg16",
        "backbone_weights": "/somewhere/weights/vgg16-imagenet-caffe-features.pth",
        "backbone_sha256": hashlib.sha256(b"backbone").hexdigest(),
        "style_image": "/somewhere/styles/the-scream.jpg",
        "style_image_sha256": hashlib.sha256(target.numpy().tobytes()).hexdigest(),
        "steps": steps, "config": dict(TRAIN_CONFIG), "package_version": __version__,
        "created": "2026-11-21T20:00:00Z",
    }
    return save_style_model(run_dir / "style_model.pt", net.eval(), meta)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training run folder holding a short-trained default-size network."""
    run = tmp_path_factory.mktemp("run") / "the-scream"
    train_style_model(run)
    return run


def _export(tmp: Path, run: Path, *extra: str) -> Path:
    out = tmp / "style.onnx"
    assert main(["-q", "export", str(run), "-o", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="session")
def fp32_export(tmp_path_factory: pytest.TempPathFactory,
                trained: Path) -> tuple[Path, Path, dt.datetime]:
    """(model file, Triton repo, export start time) of the default fp32 export."""
    tmp = tmp_path_factory.mktemp("fp32")
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    out = _export(tmp, trained, "--triton-repo", str(tmp / "triton"))
    return out, tmp / "triton", start


@pytest.fixture(scope="session")
def fp16_export(tmp_path_factory: pytest.TempPathFactory, trained: Path) -> Path:
    tmp = tmp_path_factory.mktemp("fp16")
    # The test below checks 2x3x256x320 itself; the export's own check uses smaller sizes.
    return _export(tmp, trained, "--fp16", "--name", "scream-fp16",
                   "--verify-sizes", "1x37x53,1x3x64x48")


@pytest.fixture(scope="session")
def net(trained: Path) -> TransformerNet:
    return load_style_model(trained).net


def photo_batch(n: int, h: int, w: int) -> np.ndarray:
    return np.stack([fit(skimage_photo(PHOTOS[(h + i) % len(PHOTOS)]), h, w)
                     for i in range(n)])


@pytest.fixture(scope="session")
def reference(net: TransformerNet):
    """``(n, h, w) -> (photo batch, ServingWrapper output)``, each computed once."""
    cache: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}

    def get(n: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        if (n, h, w) not in cache:
            batch = photo_batch(n, h, w)
            with torch.no_grad():
                cache[n, h, w] = batch, ServingWrapper(net)(torch.from_numpy(batch)).numpy()
        return cache[n, h, w]

    return get


def session(path: Path | bytes) -> ort.InferenceSession:
    data = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def test_export_writes_one_self_contained_file(fp32_export) -> None:
    out, _, _ = fp32_export
    assert sorted(p.name for p in out.parent.iterdir()) == ["style.onnx", "triton"]
    model = onnx.load(str(out), load_external_data=False)
    onnx.checker.check_model(model, full_check=True)
    assert all(t.data_location != TensorProto.EXTERNAL for t in model.graph.initializer)
    assert sum(t.ByteSize() for t in model.graph.initializer) > 6e6  # 1.68M fp32 weights
    (inp,), (outp,) = model.graph.input, model.graph.output
    for vi, name in ((inp, INPUT_NAME), (outp, OUTPUT_NAME)):
        tt = vi.type.tensor_type
        assert vi.name == name and tt.elem_type == TensorProto.UINT8
        dims = [d.dim_param or d.dim_value for d in tt.shape.dim]
        assert dims == ["batch", "height", "width", 3]


@pytest.mark.parametrize("n,h,w", [(1, 37, 53), (2, 256, 320), (1, 9, 8)])
def test_served_model_matches_pytorch_in_plain_onnxruntime(fp32_export, reference,
                                                           n, h, w) -> None:
    out, _, _ = fp32_export
    batch, ref = reference(n, h, w)
    got = session(out).run(None, {INPUT_NAME: batch})[0]
    assert got.shape == batch.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert diff.max() <= 1
    assert np.mean(diff == 0) >= 0.99
    assert np.std(got.astype(float)) > 5  # the network does something visible


@pytest.mark.parametrize("n,h,w", [(1, 37, 53), (2, 256, 320)])
def test_float_core_inside_the_file_is_within_1e4(fp32_export, net, n, h, w) -> None:
    # Cut the float network out of the shipped file and feed it arbitrary (not
    # uint8-quantised) [0,1] inputs: the parity bound of the issue, on the [0,1] scale.
    out, _, _ = fp32_export
    core = onnx.utils.Extractor(onnx.load(str(out))).extract_model([CORE_INPUT], [CORE_OUTPUT])
    x = torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(h))
    got = session(core.SerializeToString()).run(None, {CORE_INPUT: x.numpy()})[0]
    with torch.no_grad():
        ref = net(x).numpy()
    assert got.shape == (n, 3, h, w)
    assert np.abs(got - ref).max() <= 1e-4


def test_metadata_round_trips(fp32_export, trained: Path) -> None:
    out, _, start = fp32_export
    model = onnx.load(str(out))
    props = {p.key: p.value for p in model.metadata_props}
    md = parse_metadata(props)
    src = load_style_model(trained)
    assert md.name == "test-style"
    assert md.format == FORMAT and md.tensor_convention == TENSOR_CONVENTION
    assert md.backbone == "vgg16" and md.backbone_sha256 == src.meta["backbone_sha256"]
    assert md.style_image_sha256 == src.meta["style_image_sha256"]
    assert md.steps == 12 and dict(md.config) == TRAIN_CONFIG
    assert md.package_version == __version__ and md.precision == "fp32"
    created = dt.datetime.fromisoformat(md.created.replace("Z", "+00:00"))
    assert start <= created <= dt.datetime.now(dt.timezone.utc)
    assert props["robust_style.trained_at"] == "2026-11-21T20:00:00Z"
    assert props["robust_style.style_image"] == "the-scream.jpg"  # no training-machine paths
    assert props["robust_style.backbone_weights"] == "vgg16-imagenet-caffe-features.pth"
    assert props["robust_style.opset"] == "18"
    assert json.loads(props["robust_style.net_config"]) == {
        "channels": [32, 64, 128], "num_residual": 5, "res_kernel": 3, "separable": False,
        "end_kernel": 9, "upsample": "nearest"}
    assert props["robust_style.arch"] == "johnson"
    assert props["robust_style.source_sha256"] == hashlib.sha256(
        (trained / "style_model.pt").read_bytes()).hexdigest()
    assert {o.version for o in model.opset_import if o.domain == ""} == {18}


def test_fp16_meets_its_psnr_bound_with_instance_norm_in_fp32(fp16_export, fp32_export,
                                                              reference) -> None:
    model = onnx.load(str(fp16_export))
    assert parse_metadata({p.key: p.value for p in model.metadata_props}).precision == "fp16"
    assert fp16_export.stat().st_size < 0.6 * fp32_export[0].stat().st_size
    # Weights are half precision, except the instance norms' scales and shifts.
    conv_w = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    init = {t.name: t.data_type for t in model.graph.initializer}
    assert {init[w] for w in conv_w} == {TensorProto.FLOAT16}
    norms = op_input_types(model, "InstanceNormalization")
    assert len(norms) == 15 and {t for _, t in norms} == {TensorProto.FLOAT}
    # Same uint8 contract as fp32.
    assert [i.type.tensor_type.elem_type for i in [*model.graph.input, *model.graph.output]] \
        == [TensorProto.UINT8, TensorProto.UINT8]
    for n, h, w in [(1, 37, 53), (2, 256, 320)]:
        batch, ref = reference(n, h, w)
        got = session(fp16_export).run(None, {INPUT_NAME: batch})[0]
        assert got.shape == batch.shape
        assert psnr(got, ref, 255.0) >= 40.0


def test_triton_config_parses_and_matches_the_onnx_model(fp32_export) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    out, repo, _ = fp32_export
    entry = repo / "test-style"
    assert sorted(str(p.relative_to(entry)) for p in entry.rglob("*")) == \
        ["1", "1/model.onnx", "config.pbtxt"]
    assert (entry / "1" / "model.onnx").read_bytes() == out.read_bytes()
    cfg = text_format.Parse((entry / "config.pbtxt").read_text(), mc.ModelConfig())
    assert cfg.name == "test-style" and cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size > 0 and cfg.HasField("dynamic_batching")
    onnx_to_triton = {TensorProto.UINT8: mc.TYPE_UINT8, TensorProto.FLOAT: mc.TYPE_FP32}
    model = onnx.load(str(entry / "1" / "model.onnx"))
    for tensors, specs in ((model.graph.input, cfg.input), (model.graph.output, cfg.output)):
        assert [t.name for t in tensors] == [s.name for s in specs]
        for t, s in zip(tensors, specs, strict=True):
            assert onnx_to_triton[t.type.tensor_type.elem_type] == s.data_type
            dims = [d.dim_value if d.HasField("dim_value") else -1
                    for d in t.type.tensor_type.shape.dim]
            assert dims[0] == -1  # batch axis: implicit in Triton when max_batch_size > 0
            assert list(s.dims) == dims[1:] == [-1, -1, 3]


def test_verifier_catches_a_network_that_is_not_the_exported_one(fp32_export, net) -> None:
    out, _, _ = fp32_export
    good = verify_onnx(out, net, [(1, 37, 53)], images=[skimage_photo("chelsea")])
    assert good.passed, good.summary()
    assert good.results[0].float_max_abs is not None and good.results[0].float_max_abs <= 1e-4
    other = TransformerNet().eval()
    other.load_state_dict(net.state_dict())
    with torch.no_grad():
        other.decoder[-1][1].bias.add_(0.01)  # a tiny change to the last layer
    report = verify_onnx(out, other, [(1, 37, 53)])
    assert not report.passed
    assert report.results[0].float_max_abs is not None and report.results[0].float_max_abs > 1e-4
    assert "float max abs diff" in report.summary()
