"""Training runtime: devices, precision, the step's loss inputs and extra terms, no syncs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from helpers_checkpoints import random_resnet50, save_madry_checkpoint

from robust_style.cli import main
from robust_style.errors import UserError
from robust_style.perceptual import LossWeights, PerceptualLoss, build_loss_network
from robust_style.perceptual.backbones import BACKBONES
from robust_style.transformer_net import TransformerNet, load_style_model
from robust_style.transformer_net.config import TrainConfig
from robust_style.transformer_net.runtime import (
    cpu_has_native_bf16,
    resolve_precision,
    select_device,
)
from robust_style.transformer_net.step import StepInputs, TrainStep
from robust_style.transformer_net.train import train

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def robust_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("robust") / "madry-l2.pt"
    return save_madry_checkpoint(path, random_resnet50(seed=5))


@pytest.fixture(scope="module")
def style_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import skimage_photo
    from PIL import Image

    path = tmp_path_factory.mktemp("style") / "rocket.png"
    Image.fromarray(skimage_photo("rocket")).save(path)
    return path


@pytest.mark.parametrize("device, message", [
    ("foo", "is not a device"),
    ("cuda:7", "cuda"),
    ("cuda:x", "is not a device"),
    ("xla", "training runs on cpu, cuda or mps"),
])
def test_bad_device_is_a_one_line_error(tmp_path: Path, photo_dir: Path, style_image: Path,
                                        device: str, message: str,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "--style", str(style_image), "--content", str(photo_dir), "--backbone",
            "vgg16", "--out", str(tmp_path / "run"), "--max-steps", "1", "--workers", "0",
            "--device", device]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("robust-style: error")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_index_past_the_last_gpu_names_the_gpus() -> None:
    n = torch.cuda.device_count()
    with pytest.raises(UserError, match=f"has {n} CUDA GPU"):
        select_device(f"cuda:{n}")
    assert select_device(f"cuda:{n - 1}") == torch.device("cuda", n - 1)


def test_auto_precision_follows_the_cpu_flags(tmp_path: Path) -> None:
    with_bf16 = tmp_path / "bf16"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    with_amx = tmp_path / "amx"
    with_amx.write_text("flags\t\t: fpu avx2 amx_tile amx_bf16 amx_int8\n")
    without = tmp_path / "avx2"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    assert cpu_has_native_bf16(with_bf16) and cpu_has_native_bf16(with_amx)
    assert not cpu_has_native_bf16(without)
    assert not cpu_has_native_bf16(tmp_path / "missing")
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    assert resolve_precision("auto", CPU) == expected
    assert resolve_precision("fp32", CPU) == "fp32" and resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(UserError, match="fp16 needs CUDA"):
        resolve_precision("fp16", CPU)


def _step(precision: str, extra=(), channels_last: bool = False) -> TrainStep:
    torch.manual_seed(0)
    spec = BACKBONES["vgg16-caffe"]
    loss_net = build_loss_network("vgg16-caffe", None)
    crit = PerceptualLoss(loss_net, torch.rand(1, 3, 32, 32), LossWeights(1.0, 1.0, 1.0),
                          spec.style_layers, spec.content_layer)
    net = TransformerNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    return TrainStep(net, crit, opt, torch.amp.GradScaler("cpu", enabled=False), CPU, precision,
                     extra, channels_last=channels_last)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_loss_network_receives_float32_output_under_every_precision(precision: str) -> None:
    """Under bf16 the transformer's output is bf16; the loss network's input normalisation
    (x*255 - mean for the Caffe VGG-16) must still run in float32."""
    step = _step(precision)
    seen: list[torch.dtype] = []
    net_out: list[torch.dtype] = []
    step.criterion.net.register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    step.model.register_forward_hook(lambda m, args, out: net_out.append(out.dtype))
    values = step(torch.rand(2, 3, 32, 32))
    assert net_out == [torch.bfloat16 if precision == "bf16" else torch.float32]
    assert seen and all(d == torch.float32 for d in seen), seen
    assert values.shape == (4,) and not values.requires_grad
    assert values[-1].item() == 0.0  # finite loss


def test_extra_loss_term_is_added_and_logged(tmp_path: Path, photo_dir: Path,
                                             style_image: Path) -> None:
    class Brightness:
        name = "bright"

        def __call__(self, inputs: StepInputs) -> torch.Tensor:
            assert inputs.y.dtype == torch.float32 and inputs.y.requires_grad
            return 1e3 * inputs.y.mean()

    common = dict(style=str(style_image), content=str(photo_dir), backbone="vgg16",
                  image_size=32, batch_size=2, workers=0, log_interval=1, max_steps=3,
                  sample_interval=0, precision="fp32", content_weight=1.0, style_weight=1.0,
                  tv_weight=0.0)
    plain = train(TrainConfig(out=str(tmp_path / "plain"), **common))
    extra = train(TrainConfig(out=str(tmp_path / "extra"), **common), extra_terms=[Brightness()])
    with (extra.run_dir / "log.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["bright"]) > 0 for r in rows] == [True] * 3
    for r in rows:
        parts = sum(float(r[k]) for k in ("content", "style", "tv", "bright"))
        assert float(r["total"]) == pytest.approx(parts, rel=1e-5)
    # The term pushes the output darker: the extra run's network differs.
    a = load_style_model(plain.run_dir).net.state_dict()
    b = load_style_model(extra.run_dir).net.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_and_config_record_the_resolved_precision(tmp_path: Path, photo_dir: Path,
                                                             robust_ckpt: Path,
                                                             style_image: Path) -> None:
    cfg = TrainConfig(style=str(style_image), content=str(photo_dir), out=str(tmp_path / "r"),
                      backbone="robust-resnet50", backbone_weights=str(robust_ckpt),
                      image_size=32, batch_size=2, workers=0, max_steps=1, sample_interval=0)
    assert cfg.precision == "auto"
    result = train(cfg)
    expected = "bf16" if cpu_has_native_bf16() else "fp32"
    meta = load_style_model(result.run_dir).meta
    assert meta["precision"] == expected and meta["config"]["precision"] == expected
    assert result.config.precision == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host syncs are only observable on CUDA")
def test_no_host_sync_inside_a_step() -> None:
    spec = BACKBONES["vgg16"]
    dev = torch.device("cuda")
    crit = PerceptualLoss(build_loss_network("vgg16", None, device=dev),
                          torch.rand(1, 3, 32, 32, device=dev), LossWeights(1.0, 1.0, 1.0),
                          spec.style_layers, spec.content_layer)
    net = TransformerNet().to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, capturable=True)
    step = TrainStep(net, crit, opt, torch.amp.GradScaler("cuda", enabled=False), dev, "bf16")
    x = torch.rand(2, 3, 32, 32, device=dev)
    step(x)  # warm-up (allocations, cuDNN autotune)
    torch.cuda.set_sync_debug_mode("error")
    try:
        step(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_max_minutes_stops_at_a_log_row_and_resume_continues(tmp_path: Path, photo_dir: Path,
                                                             style_image: Path) -> None:
    common = dict(style=str(style_image), content=str(photo_dir), backbone="vgg16",
                  image_size=32, batch_size=2, workers=0, log_interval=2, sample_interval=0,
                  precision="fp32")
    run = tmp_path / "timed"
    first = train(TrainConfig(out=str(run), max_steps=50, max_minutes=1e-6, **common))
    assert first.steps == 2  # the first log row is past the budget
    assert load_style_model(run).meta["steps"] == 2
    resumed = train(TrainConfig(style="", content="", out=str(run)), resume=True,
                    overrides={"max_minutes": 60.0, "max_steps": 4})
    assert resumed.steps == 4
    with (run / "log.csv").open(newline="") as fh:
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [2, 4]


def test_log_records_the_wait_for_the_data_loader(tmp_path: Path, photo_dir: Path,
                                                  style_image: Path) -> None:
    """``data_wait_s``: the seconds each log interval spent waiting for batches, measured
    around the real DataLoader with a worker process (the first one includes its start)."""
    run = train(TrainConfig(style=str(style_image), content=str(photo_dir), out=str(tmp_path / "r"),
                            backbone="vgg16", image_size=32, batch_size=2, workers=1,
                            log_interval=1, max_steps=3, sample_interval=0, precision="fp32"))
    with (run.run_dir / "log.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    waits = [float(r["data_wait_s"]) for r in rows]
    assert len(waits) == 3 and all(w >= 0 for w in waits)
    assert waits[0] > 0  # the first batch waits at least for the worker to start and decode
    assert sum(waits) < float(rows[-1]["elapsed_s"]) + 1e-3
