"""One training step: the loss of a batch, backward, and an optimizer update.

The loss of a step is the perceptual loss (content + style + TV, Johnson et al. 2016)
plus any **extra loss terms** (:class:`LossTerm`, e.g. a temporal regulariser): each is
called with the step's :class:`StepInputs`, returns its *weighted* scalar, is added to
the total and gets its own ``log.csv`` column.

What the loss network receives, by precision (issue 15):

* ``fp32``: the output, float32.
* ``bf16``/``fp16``: the transformer runs under autocast and its output (bf16/fp16) is
  cast back to **float32** before the loss network. The loss network's input
  normalisation then runs in float32 (with the Caffe VGG-16, ``x·255 − mean`` in
  bf16 would be off by up to 1 grey level of 255 on its own); its convolutions still
  run in bf16/fp16 under autocast, the Gram matrices and the losses in float32
  (:func:`robust_style.perceptual.gram_matrix`).

No host sync: the step returns its terms as a detached device tensor
(:class:`~robust_style.transformer_net.run_files.LossWindow` reads them once per log
interval), and a non-finite loss is flagged in that tensor, not tested here.

Making the step fast without changing what it computes, memory layout and compilation:

* ``channels_last`` (NHWC): oneDNN's CPU convolutions and cuDNN's tensor-core ones work
  in NHWC; in NCHW every convolution reorders its input and output.
* ``torch.compile`` of the loss computation (transformer forward, loss network, Gram
  matrices, losses; TorchInductor also generates the backward) fuses the element-wise
  work between the convolutions (instance norms, ReLUs, normalisation, losses).
  Compiling costs time once per run (minutes on CPU: docs/training.md) and needs a C++
  compiler on CPU; ``--compile off`` turns it off, and any failure to compile falls
  back to eager mode with one warning (:class:`TrainStep`).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from robust_style.errors import first_line
from robust_style.perceptual import PerceptualLoss
from robust_style.transformer_net.runtime import autocast

__all__ = ['BASE_TERMS', 'LossTerm', 'StepInputs', 'TrainStep', 'can_compile', 'compile_step', 'to_channels_last', 'wants_compile']

log = logging.getLogger(__name__)

#: The perceptual loss's terms, in ``log.csv`` order.
BASE_TERMS = ("content", "style", "tv")


@dataclass(frozen=True)
class StepInputs:
    """What an extra loss term sees: the content batch ``x``, the network's output ``y``
    (float32, with autograd), and the network ``model`` (to run it again, e.g. on a
    shifted or warped batch). Terms run under the step's autocast."""

    x: torch.Tensor
    y: torch.Tensor
    model: nn.Module


class LossTerm(Protocol):
    """An extra, weighted loss term added to the perceptual loss of every step."""

    name: str

    def __call__(self, inputs: StepInputs) -> torch.Tensor: ...


class TrainStep:
    """``step(x)`` trains on batch ``x`` and returns ``(terms..., nonfinite)`` detached.

    ``model`` is what runs the batch (the network, maybe DDP-wrapped); ``forward`` is
    the loss computation, possibly ``torch.compile``d (:func:`compile_step`), with
    ``eager_forward`` the uncompiled fallback taken if compiling fails.
    """

    def __init__(self, model: nn.Module, criterion: PerceptualLoss,
                 optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                 device: torch.device, precision: str,
                 extra_terms: Sequence[LossTerm] = (), channels_last: bool = False) -> None:
        self.model = model
        self.criterion = criterion
        self.optimizer = optimizer
        self.scaler = scaler
        self.device = device
        self.precision = precision
        self.extra_terms = tuple(extra_terms)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        names = [t.name for t in self.extra_terms]
        if len(set(names)) != len(names) or set(names) & set(BASE_TERMS):
            raise ValueError(f"extra loss term names must be unique and new: {names}")
        self.forward: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] = \
            self.eager_forward
        self.on_compile_failure: Callable[[], None] | None = None

    @property
    def terms(self) -> tuple[str, ...]:
        """Names of the loss terms, in the order of the returned vector."""
        return (*BASE_TERMS, *(t.name for t in self.extra_terms))

    def to_device(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.to(self.device, non_blocking=True, memory_format=self.memory_format)

    def eager_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(total loss, stacked weighted terms)`` of batch ``x``."""
        with autocast(self.device, self.precision):
            y = self.model(x).float()  # the loss network gets float32 (module docstring)
            total, parts = self.criterion(y, x)
            values = [parts[k] for k in BASE_TERMS]
            for term in self.extra_terms:
                v = term(StepInputs(x, y, self.model)).float()
                total = total + v
                values.append(v)
        return total, torch.stack(values)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = self.to_device(batch)
        try:
            total, values = self.forward(x)
        except Exception as exc:
            if self.forward is self.eager_forward or self.on_compile_failure is None:
                raise
            log.warning("torch.compile failed (%s); training continues in eager mode "
                        "(--compile off skips the attempt)", _root_cause(exc))
            log.debug("torch.compile failure", exc_info=True)
            self.forward = self.eager_forward
            self.on_compile_failure()
            total, values = self.forward(x)
        nonfinite = (~torch.isfinite(total)).to(values.dtype).reshape(1)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)  # fp16: skips the update on inf/NaN gradients
        self.scaler.update()
        return torch.cat([values.detach(), nonfinite])


def _root_cause(exc: BaseException) -> str:
    """``Type: first line`` of the innermost cause (Dynamo wraps a backend's error)."""
    while True:
        inner = exc.__cause__ or getattr(exc, "inner_exception", None)
        if not isinstance(inner, BaseException) or inner is exc:
            break
        exc = inner
    first = first_line(str(exc))
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__




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
