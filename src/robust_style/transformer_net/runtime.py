"""Where training runs: processes (torchrun/DDP), the device, and the numeric precision.

* :func:`setup_distributed` joins the process group when launched by ``torchrun``.
* :func:`select_device` turns ``--device`` into a :class:`torch.device`, or a one-line
  :class:`~robust_style.errors.UserError` (``foo``, ``cuda:7`` on a one-GPU machine).
* :func:`resolve_precision` turns ``--precision auto`` into ``bf16`` where the hardware
  computes bfloat16 natively (CPUs with AVX-512 BF16 or AMX, CUDA GPUs that support it)
  and ``fp32`` elsewhere: bf16 autocast halves the step time on such CPUs
  (docs/training.md), but *emulated* bf16 is slower than fp32.
* :func:`broadcast_from_main` sends rank 0's numbers to every rank, on the training
  device: NCCL cannot broadcast CPU tensors.
"""

from __future__ import annotations

import logging
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch
import torch.distributed as dist

from robust_style.errors import UserError

__all__ = [
    "DistContext",
    "autocast",
    "broadcast_from_main",
    "cpu_has_native_bf16",
    "resolve_precision",
    "select_device",
    "setup_distributed",
    "teardown_distributed",
]

log = logging.getLogger(__name__)

#: /proc/cpuinfo flags of x86 CPUs that compute bfloat16 natively (AVX-512 BF16; AMX tiles).
_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@dataclass(frozen=True)
class DistContext:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_pref: str) -> DistContext:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_pref != "cpu"
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(),
                       int(os.environ.get("LOCAL_RANK", "0")))


def teardown_distributed(dctx: DistContext) -> None:
    if dctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def select_device(pref: str, local_rank: int = 0, *, distributed: bool = False) -> torch.device:
    """``--device`` to a device: ``auto`` is CUDA when present, else CPU.

    Under ``torchrun`` on CUDA each process takes GPU ``LOCAL_RANK`` whatever index was
    given (``distributed=True``).
    """
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(pref)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {pref!r} is not a device; use auto, cpu, cuda or cuda:N") \
            from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError("--device cuda asked for, but no CUDA GPU is available; "
                            "use --device cpu")
        index = local_rank if distributed or device.index is None else device.index
        if index >= count:
            raise UserError(f"--device {pref}: this machine has {count} CUDA GPU(s) "
                            f"(cuda:0..cuda:{count - 1})")
        device = torch.device("cuda", index)
        if distributed:
            torch.cuda.set_device(device)  # NCCL collectives use the current device
        return device
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps asked for, but MPS is not available")
    if device.type not in ("cpu", "mps"):
        raise UserError(f"--device {pref}: training runs on cpu, cuda or mps")
    return device


@cache
def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU advertises AVX-512 BF16 or AMX-BF16 (read at run time)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(_BF16_CPU_FLAGS & set(line.split(":", 1)[-1].split()))
    return False


def resolve_precision(pref: str, device: torch.device) -> str:
    """``auto`` to ``bf16`` or ``fp32`` for ``device``; explicit choices are checked."""
    if pref == "fp16" and device.type != "cuda":
        raise UserError("--precision fp16 needs CUDA; on CPU use bf16 or fp32")
    if pref != "auto":
        return pref
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str) -> AbstractContextManager[object]:
    """The autocast context of ``precision`` (``fp32``: none)."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def broadcast_from_main(values: list[float], dctx: DistContext,
                        device: torch.device) -> list[float]:
    """Rank 0's ``values`` on every rank.

    The tensor lives on the training ``device``: NCCL (CUDA) cannot broadcast CPU
    tensors, gloo (CPU) broadcasts CPU ones.
    """
    if not dctx.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(t, src=0)
    return t.tolist()
