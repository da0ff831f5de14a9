"""Making a step fast without changing what it computes: memory layout and compilation.

* ``channels_last`` (NHWC): oneDNN's CPU convolutions and cuDNN's tensor-core ones work
  in NHWC; in NCHW every convolution reorders its input and output.
* ``torch.compile`` of the loss computation (transformer forward, loss network, Gram
  matrices, losses; TorchInductor also generates the backward) fuses the element-wise
  work between the convolutions (instance norms, ReLUs, normalisation, losses).
  Compiling costs time once per run (minutes on CPU: docs/training.md) and needs a C++
  compiler on CPU; ``--compile off`` turns it off, and any failure to compile falls
  back to eager mode with one warning (:class:`~.step.TrainStep`).
"""

from __future__ import annotations

import logging
import shutil

import torch
from torch import nn

from robust_style.transformer_net.step import TrainStep

__all__ = ["compile_step", "can_compile", "to_channels_last", "wants_compile"]

log = logging.getLogger(__name__)


def to_channels_last(*modules: nn.Module) -> None:
    """Convert the 4-D parameters and buffers of ``modules`` to NHWC in place."""
    for m in modules:
        m.to(memory_format=torch.channels_last)


def wants_compile(choice: str, device: torch.device) -> bool:
    """``--compile auto`` compiles on CUDA only: on this project's 2-core CPU compiling
    the step took 7.5 minutes and the compiled steps were no faster (docs/training.md)."""
    return choice == "on" or (choice == "auto" and device.type == "cuda")


def can_compile(device: torch.device) -> tuple[bool, str]:
    """Whether ``torch.compile`` can work here, and why not."""
    if device.type == "cpu" and shutil.which("c++") is None and shutil.which("g++") is None:
        return False, "no C++ compiler on PATH (TorchInductor needs one on CPU)"
    if device.type == "mps":
        return False, "not used on MPS"
    return True, ""


def compile_step(step: TrainStep, backend: str = "inductor") -> bool:
    """Compile ``step``'s loss computation; returns whether it will be compiled.

    Compilation happens lazily at the first step; if it fails there, the step falls
    back to eager mode (the same computation, uncompiled) with one warning. ``backend``
    is a ``torch._dynamo`` backend name (TorchInductor by default).
    """
    ok, why = can_compile(step.device)
    if not ok:
        log.info("torch.compile off: %s", why)
        return False
    step.forward = torch.compile(step.eager_forward, backend=backend, dynamic=False)

    def fallback() -> None:
        torch._dynamo.reset()

    step.on_compile_failure = fallback
    log.info("torch.compile on: the first step compiles the loss computation "
             "(--compile off to skip)")
    return True
