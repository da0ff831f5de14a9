"""``--compile``: a failing compile falls back to eager mode with one log line, and
``--compile off`` never compiles.

The failure is a real one: a ``torch._dynamo`` backend registered here that raises when
Dynamo hands it the traced graph, so the step goes through ``torch.compile``'s real
tracing and error path (TorchInductor itself takes minutes on a 2-core CPU, too long
for a test).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch._dynamo import register_backend
from torch._dynamo.utils import counters

from robust_style.cli import main
from robust_style.perceptual import LossWeights, PerceptualLoss, build_loss_network
from robust_style.perceptual.backbones import BACKBONES
from robust_style.transformer_net import TransformerNet
from robust_style.transformer_net.step import TrainStep, compile_step

CPU = torch.device("cpu")
FAILING_BACKEND = "robust_style_test_failing"


@register_backend(name=FAILING_BACKEND)
def _failing_backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
    raise RuntimeError("this backend cannot compile anything")


def _step(precision: str) -> TrainStep:
    torch.manual_seed(0)
    spec = BACKBONES["vgg16"]
    loss_net = build_loss_network("vgg16", None)
    crit = PerceptualLoss(loss_net, torch.rand(1, 3, 32, 32), LossWeights(1.0, 1e3, 1.0),
                          spec.style_layers, spec.content_layer)
    net = TransformerNet().train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    return TrainStep(net, crit, opt, torch.amp.GradScaler("cpu", enabled=False), CPU, precision)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_failing_compile_falls_back_to_eager_with_one_log_line(
        precision: str, caplog: pytest.LogCaptureFixture) -> None:
    eager, compiled = _step(precision), _step(precision)
    frames_before = counters["frames"]["total"]
    assert compile_step(compiled, backend=FAILING_BACKEND)
    batches = [torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(i))
               for i in range(3)]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="robust_style"):
        got = [compiled(b) for b in batches]
    want = [eager(b) for b in batches]
    # Dynamo really traced the step and handed it to the backend, which failed...
    assert counters["frames"]["total"] > frames_before
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "torch.compile failed" in message and "eager mode" in message
    assert "this backend cannot compile anything" in message  # the cause, not Dynamo's wrapper
    assert "\n" not in message and warnings[0].exc_info is None  # one line, no traceback
    # ...and the run went on in eager mode: the same losses and weights as an eager run,
    # without retrying the compile at later steps.
    assert compiled.forward == compiled.eager_forward
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)
    for p, q in zip(compiled.model.parameters(), eager.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_compile_off_trains_without_compiling(tmp_path: Path, photo_dir: Path) -> None:
    style = next(p for p in sorted(photo_dir.rglob("*")) if p.is_file())
    frames_before = counters["frames"]["total"]
    argv = ["train", "--style", str(style), "--content", str(photo_dir), "--backbone", "vgg16",
            "--out", str(tmp_path / "run"), "--max-steps", "2", "--image-size", "32",
            "--batch-size", "2", "--workers", "0", "--sample-interval", "0",
            "--compile", "off", "--device", "cpu"]
    assert main(argv) == 0
    assert (tmp_path / "run" / "style_model.pt").is_file()
    assert counters["frames"]["total"] == frames_before  # Dynamo never saw a frame
