"""What every engine shares: the :class:`Engine` protocol, its config, the CPU budget.

An engine runs one style model (the ``.onnx`` contract of :mod:`robust_style.contract`:
uint8 NHWC in, uint8 NHWC out, any N, H, W) on one runtime at one precision. Engines are
torch-free and thread-safe: the batchers of several styles, and local callers, may run
them at once.

CPU budget. Each CPU engine runs a batch with ``threads`` threads (``--intra-op-threads``;
0 = one per core). Several styles, or several local callers, running at once would then
ask for more threads than there are cores: the runs slow each other down (context
switches, cache thrashing, and ONNX Runtime's spinning workers burn the cores the others
need). So every CPU run first takes ``threads`` units from one process-wide
:class:`CpuBudget` holding as many units as the process may use cores
(``os.sched_getaffinity``); runs that would exceed it wait their turn. With the default
threads (all cores) CPU runs take turns; with ``--intra-op-threads 1`` on 2 cores two run
side by side. GPU runs take no units.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from robust_style.pixels import psnr

__all__ = ["Engine", "FallbackListener", "PartRunner", "CPU", "CUDA", "TRT", "CpuBudget", "cpu_budget", "available_cores", "psnr",
           "ENGINES", "PRECISIONS", "GATE_PSNR_DB"]

#: Called with ``(n, h, w)`` of a batch that ran outside every TensorRT profile.
FallbackListener = Callable[[tuple[int, int, int]], None]
#: ONNX Runtime execution providers, named once.
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"

#: ``--engine`` choices.
ENGINES = ("auto", "onnxruntime", "openvino")
#: ``--precision`` choices (``fp16`` is TensorRT's, chosen by its own options). ``int8``:
#: OpenVINO with NNCF post-training quantisation, gated like bf16 (:mod:`.select`).
PRECISIONS = ("auto", "fp32", "bf16", "int8")
#: Accuracy gate: below this PSNR against the fp32 ONNX Runtime output, a reduced
#: precision is refused at load. bf16 on this network measures ~50-55 dB (docs/serving.md),
#: so 45 dB leaves a margin while catching a broken kernel or an unstable InstanceNorm.
GATE_PSNR_DB = 45.0


@dataclass(frozen=True)
class PartRunner:
    """A compiled graph of any named inputs and outputs (a tiling segment, see
    :mod:`robust_style.server.tiling`) on an engine's runtime: ``run(feeds)`` gives the
    outputs in graph order. Thread-safe; CPU runs hold the :class:`CpuBudget` as the
    engine's own runs do.

    ``consume(feeds, use)`` calls ``use`` on the outputs while they are valid and not
    after: they may be the runtime's own buffers (OpenVINO's, shared), so a caller that
    only copies a crop of them out (the tiler) saves a full copy of each output."""

    run: Callable[[dict[str, np.ndarray]], list[np.ndarray]]
    shared: Callable[[dict[str, np.ndarray], Callable[[list[np.ndarray]], None]], None] | None = None

    def consume(self, feeds: dict[str, np.ndarray],
                use: Callable[[list[np.ndarray]], None]) -> None:
        if self.shared is not None:
            self.shared(feeds, use)
        else:
            use(self.run(feeds))


@runtime_checkable
class Engine(Protocol):
    """One style model on one runtime. ``run`` maps ``NxHxWx3 uint8`` to the same."""

    #: ``"onnxruntime"`` or ``"openvino"``.
    name: str
    #: ``"fp32"``, ``"bf16"`` or ``"fp16"``: the arithmetic the network really runs in.
    precision: str
    #: Execution providers (ONNX Runtime, in order) or devices (OpenVINO).
    devices: tuple[str, ...]
    #: True if ``run`` computes on the CPU (then it takes units of the :class:`CpuBudget`).
    on_cpu: bool

    def run(self, batch: np.ndarray) -> np.ndarray: ...

    def describe(self) -> str: ...

    def set_fallback_listener(self, listener: FallbackListener | None) -> None:
        """Call ``listener(shape)`` for every batch no optimised profile covers (TensorRT;
        engines without profiles never call it)."""


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class CpuBudget:
    """A weighted semaphore of ``cores`` units: a CPU run of ``t`` threads holds ``t``.

    Waiting runs are served in arrival order (a run wanting all cores is not starved by a
    stream of one-thread runs).
    """

    def __init__(self, cores: int) -> None:
        self.cores = max(1, int(cores))
        self._free = self.cores
        self._cond = threading.Condition()
        self._queue: list[object] = []

    def units(self, threads: int) -> int:
        """Units a run with ``threads`` threads takes (0 = all cores)."""
        return self.cores if threads <= 0 else min(self.cores, threads)

    @contextlib.contextmanager
    def hold(self, threads: int) -> Iterator[None]:
        need, ticket = self.units(threads), object()
        with self._cond:
            self._queue.append(ticket)
            while self._queue[0] is not ticket or self._free < need:
                self._cond.wait()
            self._queue.pop(0)
            self._free -= need
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._free += need
                self._cond.notify_all()

    def in_use(self) -> int:
        with self._cond:
            return self.cores - self._free


_BUDGET: CpuBudget | None = None
_BUDGET_LOCK = threading.Lock()


def cpu_budget() -> CpuBudget:
    """The process-wide CPU budget (created on first use)."""
    global _BUDGET
    with _BUDGET_LOCK:
        if _BUDGET is None:
            _BUDGET = CpuBudget(available_cores())
        return _BUDGET


