"""The memory budget: what the process may hold, and who may use how much of it, when.

Memory grows with pixels x styles: a style's compiled engine stays resident (weights,
kernels), and each run needs working memory proportional to its pixels (the activations:
~575 B per pixel for the bundled style on OpenVINO fp32, so a 12 MP photo needs ~7 GB).
:class:`MemoryBudget` keeps the total under ``--memory-budget``:

* each style's engine is a :class:`BudgetedEngine`: its resident size and its working
  memory per pixel are measured at load (RSS and peak RSS around two warm-up runs; the
  figure is shared by styles of the same architecture and engine);
* every run first reserves its working memory; runs that do not fit wait in their style's
  queue (in arrival order), never overcommit;
* an image whose untiled run does not fit runs tiled (:mod:`robust_style.server.tiling`:
  exact, whole-image instance-norm statistics), with tiles and RAM buffers sized to what
  fits, buffers beyond it memory-mapped to disk;
* resident engines of idle styles are evicted least-recently-used to make room and
  reloaded on their next request;
* a run that can never fit (not even one tile) raises :class:`MemoryTooSmall` with the
  numbers (RESOURCE_EXHAUSTED), and a style that cannot run even one tile refuses to load.

The default budget is the machine's memory or the cgroup's limit (v1
``memory.limit_in_bytes``, v2 ``memory.max``), whichever is smaller, less a margin
(10%, at least 256 MiB) for what the budget does not see (gRPC buffers, encoding,
Python objects). Sizes are binary (``4G`` = 4 GiB), as ``docker --memory`` reads them.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import ctypes.util
import dataclasses
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robust_style.errors import UserError
from robust_style.server.engines.base import Engine, FallbackListener
from robust_style.server.tiling import SplitModel, TiledRunner

__all__ = ["MemoryBudget", "BudgetedEngine", "MemoryTooSmall", "MemoryProfile", "parse_size",
           "format_size", "default_budget", "available_memory", "cgroup_limit", "machine_memory", "rss",
           "peak_rss", "reset_peak", "trim", "limit_arenas", "resident_floor", "MIN_TILE",
           "CPU_TILE"]

log = logging.getLogger(__name__)

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
#: Smallest tile core side the planner tries (working-resolution pixels).
MIN_TILE = 64
_TILES = (2048, 1536, 1024, 768, 512, 384, 256, 192, 128, MIN_TILE)
#: Largest tile core side on a CPU engine, whatever the budget allows. Measured on the
#: bundled style, OpenVINO fp32, 2-core AMD EPYC (docs/serving.md): a 12 MP photo took
#: 36.7 s in 384-px tiles and 43.3 s in 1024-px ones, 4 MP 13.5 s and 16.7 s (halos here
#: are 1-4 px, so small tiles cost little; why large ones are slower was not profiled).
CPU_TILE = 384


#: Least resident size of an engine: (times the model file's size, plus bytes), measured
#: here as the RSS of ten engines of the tiny test model and of the bundled style (ONNX
#: Runtime ~1.1x the file + 0.6 MiB, OpenVINO ~3x + 4.5 MiB). The RSS delta of one load
#: under-reads when the load reuses memory freed before, so it is never taken below this.
RESIDENT_FLOOR = {"onnxruntime": (1.1, 1 << 20), "openvino": (3.0, 5 << 20)}


def resident_floor(engine: str, model_bytes: int) -> int:
    factor, extra = RESIDENT_FLOOR.get(engine, (3.0, 5 << 20))
    return int(factor * model_bytes + extra)


class MemoryTooSmall(UserError):
    """A run (or a style) that cannot fit in the memory budget; the message has the numbers."""


def parse_size(text: str) -> int:
    """``"4G"``, ``"3500M"``, ``"512MiB"``, ``"1.5GB"``, ``"1073741824"`` -> bytes (binary)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(I?B)?\s*", str(text).upper())
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 4G, 3500M, 512MiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def format_size(n: float) -> str:
    """Bytes as ``"3.5 GiB"``/``"740 MiB"``."""
    return f"{n / (1 << 30):.2f} GiB" if abs(n) >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def machine_memory() -> int:
    """Physical memory of the machine, bytes."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 34


def cgroup_limit(proc_cgroup: Path = Path("/proc/self/cgroup"),
                 root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """This process's cgroup memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``,
    the tightest along its path), or None when there is none."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits: list[int] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2
            base, name = root, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = root / "memory", "memory.limit_in_bytes"
        else:
            continue
        rel = Path(path.lstrip("/"))
        for d in [rel, *rel.parents]:
            try:
                value = (base / d / name).read_text().strip()
            except OSError:
                continue
            if value.isdigit() and int(value) < 1 << 60:
                limits.append(int(value))
    return min(limits) if limits else None


def default_budget() -> int:
    """The machine's memory or the cgroup limit (the smaller), less 10% (at least 256 MiB)."""
    total = machine_memory()
    limit = cgroup_limit()
    if limit is not None:
        total = min(total, limit)
    return int(total - max(256 << 20, total // 10))


def available_memory() -> int:
    """What this machine has free now (``MemAvailable``), within the cgroup limit, less
    10%: the default budget of a local ``stylize --model`` run."""
    free = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    free = free or machine_memory()
    return min(int(free * 0.9) + rss(), default_budget())


def _status(key: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def rss() -> int:
    """Resident set size of this process now, bytes (0 where unknown)."""
    return _status("VmRSS")


def peak_rss() -> int:
    """Peak RSS since the last :func:`reset_peak` (or the start), bytes."""
    return _status("VmHWM")


def reset_peak() -> bool:
    """Reset the peak RSS (Linux ``clear_refs`` 5); False where it cannot be."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


_LIBC: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL | None:
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            return None
    return _LIBC


def trim() -> None:
    """Give freed heap memory back to the OS (glibc ``malloc_trim``; elsewhere a no-op)."""
    with contextlib.suppress(AttributeError):
        if (libc := _libc()) is not None:
            libc.malloc_trim(0)


def limit_arenas(n: int = 2) -> None:
    """At most ``n`` glibc malloc arenas for threads started from now on (``M_ARENA_MAX``).

    glibc gives each new thread (one batcher per style, the runtimes' pools) its own arena
    and keeps what is freed there; with dozens of styles that retained memory grows past
    any budget. Two arenas keep it bounded at no measurable cost for these large,
    short-lived allocations."""
    with contextlib.suppress(AttributeError):
        if (libc := _libc()) is not None:
            libc.mallopt(-8, n)  # M_ARENA_MAX


@dataclass(frozen=True)
class MemoryProfile:
    """How one model on one engine uses memory: resident, and working = fixed + per pixel;
    ``groups``: the working memory per working pixel of each fused group of its split
    (a group not measured is never run whole)."""

    resident: int
    fixed: int
    per_pixel: float
    groups: dict[tuple[int, int], float] = dataclasses.field(default_factory=dict)

    def working(self, pixels: int) -> int:
        return int(self.fixed + self.per_pixel * pixels)


@dataclass(frozen=True)
class Plan:
    """How a run goes: untiled, or tiled with ``tile`` and ``ram`` bytes of RAM buffers
    (and a fused ``group`` of low-resolution segments run whole)."""

    reserve: int
    tiled: bool
    tile: int = 0
    ram: int = 0
    #: The fused group (:attr:`SplitModel.groups`) run on the whole image, if any.
    group: tuple[int, int] | None = None


class MemoryBudget:
    """The process's memory budget: resident engines + reserved working memory <= capacity."""

    def __init__(self, total: int, baseline: int | None = None) -> None:
        self.total = int(total)
        #: What the process holds before any style (interpreter, libraries).
        self.baseline = rss() if baseline is None else int(baseline)
        self.capacity = self.total - self.baseline
        self._cond = threading.Condition()
        self._reserved = 0
        self._resident: collections.OrderedDict[BudgetedEngine, int] = collections.OrderedDict()
        self._queue: list[object] = []
        #: Measured profiles by (architecture, engine, precision), shared by their styles.
        self.profiles: dict[tuple[str, str, str], MemoryProfile] = {}
        self.evictions = 0
        limit_arenas()

    def describe(self) -> str:
        return (f"memory budget {format_size(self.total)} (baseline {format_size(self.baseline)}"
                f", {format_size(self.capacity)} for styles)")

    def used(self) -> tuple[int, int]:
        """(resident engines, reserved working memory), bytes."""
        with self._cond:
            return sum(self._resident.values()), self._reserved

    def loaded(self) -> list[BudgetedEngine]:
        with self._cond:
            return list(self._resident)

    def add_resident(self, engine: BudgetedEngine, nbytes: int) -> None:
        """An engine that is loaded (outside :meth:`hold`, e.g. at load time)."""
        with self._cond:
            self._resident[engine] = int(nbytes)
            self._resident.move_to_end(engine)
            self._evict_for(0, keep=engine)

    def set_resident(self, engine: BudgetedEngine, nbytes: int) -> None:
        """A loaded engine's resident size changed (e.g. memory its runtime keeps); idle
        engines are evicted, least recently used first, while the total is over."""
        with self._cond:
            if engine in self._resident:
                self._resident[engine] = int(nbytes)
                self._evict_for(0, keep=engine)
                self._cond.notify_all()

    def forget(self, engine: BudgetedEngine) -> None:
        with self._cond:
            self._resident.pop(engine, None)
            self._cond.notify_all()

    def _free(self) -> int:
        return self.capacity - self._reserved - sum(self._resident.values())

    def _evict_for(self, need: int, keep: BudgetedEngine) -> bool:
        """Evict idle engines, least recently used first, until ``need`` bytes are free."""
        for victim in list(self._resident):
            if self._free() >= need:
                break
            if victim is keep or victim.busy:
                continue
            del self._resident[victim]
            victim.evict()
            self.evictions += 1
        return self._free() >= need

    @contextlib.contextmanager
    def hold(self, engine: BudgetedEngine, working: int, reuse: bool = False) -> Iterator[None]:
        """Reserve ``working`` bytes (and ``engine``'s resident size if it must load);
        waits its turn (arrival order), evicting idle engines LRU to make room. ``reuse``:
        the run reuses the memory the loaded engine kept (``retained``), so only the rest
        is reserved."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            while True:
                loaded = engine in self._resident
                working_now = max(0, working - engine.retained) if loaded and reuse else working
                need = working_now + (0 if loaded else engine.profile.resident)
                if need > self.capacity:
                    self._queue.remove(ticket)
                    self._cond.notify_all()
                    raise MemoryTooSmall(
                        f"this run needs {format_size(need)} and the memory budget leaves "
                        f"{format_size(self.capacity)} for styles ({self.describe()})")
                if self._queue[0] is ticket:
                    if self._evict_for(need, keep=engine):
                        break
                    if loaded and engine.retained and not engine.busy:
                        # what the engine itself keeps from an earlier run is in the way:
                        # drop its compiled model (reloaded now, with nothing kept)
                        del self._resident[engine]
                        engine.evict()
                        self.evictions += 1
                        continue
                self._cond.wait(0.5)
            self._queue.pop(0)
            if not loaded:
                self._resident[engine] = engine.profile.resident
                engine.retained = 0
            self._resident.move_to_end(engine)
            self._reserved += working_now
            engine.busy += 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._reserved -= working_now
                engine.busy -= 1
                self._cond.notify_all()


class BudgetedEngine:
    """An engine under a :class:`MemoryBudget` (the :class:`Engine` protocol).

    ``run`` plans each batch (untiled when it fits, else tiled), reserves its memory,
    reloads the engine if it was evicted (``rebuild``), and runs. ``split`` is the model's
    tiling split, or None when it cannot be tiled (``tiling_note`` says why).
    """

    def __init__(self, engine: Engine, rebuild: Callable[[], Engine], budget: MemoryBudget,
                 profile: MemoryProfile, split: SplitModel | None, tiling_note: str = "") -> None:
        self._engine: Engine | None = engine
        self._rebuild, self.budget, self.profile = rebuild, budget, profile
        self.name, self.precision = engine.name, engine.precision
        self.devices, self.on_cpu = engine.devices, engine.on_cpu
        self.split, self.tiling_note = split, tiling_note
        self._tiler: TiledRunner | None = None
        self._lock = threading.Lock()
        self._listener: FallbackListener | None = None
        self.busy = 0
        #: Working memory the runtime keeps after a run (an OpenVINO compiled model keeps
        #: the intermediate memory of the largest shape it ran; measured: ~550 MiB after a
        #: 1024² run of Johnson's network, freed only with the compiled model, not by
        #: dropping its infer requests): counted as resident until the engine is evicted.
        self.retained = 0
        #: Runs so far by kind: "untiled", "tiled", "reloads".
        self.runs: collections.Counter[str] = collections.Counter()
        budget.add_resident(self, profile.resident)

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def inner(self) -> Engine | None:
        """The wrapped engine while it is loaded (None once evicted)."""
        return self._engine

    def describe(self) -> str:
        if self._engine is None:
            return f"{self.name} {self.precision} (evicted; reloads on demand)"
        return self._engine.describe()

    def set_fallback_listener(self, listener: FallbackListener | None) -> None:
        self._listener = listener
        if self._engine is not None:
            self._engine.set_fallback_listener(listener)

    def evict(self) -> None:
        """Drop the compiled engine and tiled parts (called by the budget)."""
        with self._lock:
            self._engine, self._tiler = None, None
            self.retained = 0
        log.info("evicted %s %s from memory (least recently used)", self.name, self.precision)
        trim()

    def close(self) -> None:
        """The style is gone: leave the budget."""
        self.budget.forget(self)
        with self._lock:
            self._engine, self._tiler = None, None

    def _ensure(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = self._rebuild()
                self._engine.set_fallback_listener(self._listener)
                self.runs["reloads"] += 1
            return self._engine

    def _tiled(self, engine: Engine) -> TiledRunner:
        with self._lock:
            if self._tiler is None:
                assert self.split is not None
                self._tiler = TiledRunner(  # parts that keep memory are compiled per run
                    self.split, engine.compile_part,  # type: ignore[attr-defined]
                    keep_parts=not getattr(engine, "keeps_working_memory", False))
            return self._tiler

    def tile_working(self, n: int, tile: int) -> int:
        """Working memory of one tile (core ``tile`` plus the widest halo on both sides)."""
        assert self.split is not None
        halo = max(s.radius for s in self.split.segments) + self.split.align
        return self.profile.working(n * (tile + 2 * halo) ** 2)

    def group_working(self, group: tuple[int, int], n: int, h: int, w: int) -> int | None:
        """Working memory of a fused group run on the whole ``n x h x w`` batch, from its
        measured figure (None: not measured, so not run whole), with 10% more for
        allocator variation."""
        assert self.split is not None
        per_px = self.profile.groups.get(group)
        if per_px is None:
            return None
        hp, wp = self.split.working_size(h, w)
        return int(1.1 * per_px * n * hp * wp)

    def minimum(self) -> int:
        """The least budget (above the baseline) one run of a small image needs here."""
        if self.split is None:
            return self.profile.resident + self.profile.working(MIN_TILE * MIN_TILE)
        return self.profile.resident + self.tile_working(1, MIN_TILE)

    def plan(self, n: int, h: int, w: int) -> Plan:
        """Untiled if it fits the budget, else tiled as large as fits; :class:`MemoryTooSmall`."""
        room = self.budget.capacity - self.profile.resident
        io = n * h * w * 3 * 2
        untiled = self.profile.working(n * h * w) + io
        if untiled <= room:
            return Plan(untiled, False)
        if self.split is None:
            raise MemoryTooSmall(
                f"a batch of {n} {w}x{h} images needs {format_size(untiled)} untiled, "
                f"{format_size(room)} is free for it, and this model cannot be tiled "
                f"({self.tiling_note}); {self.budget.describe()}")
        buffers = self.split.buffer_bytes(n, h, w)
        for tile in (t for t in _TILES if not self.on_cpu or t <= CPU_TILE):
            work = self.tile_working(n, tile) + io
            if work * 2 <= room or (tile == MIN_TILE and work <= room):
                for group in self.split.groups:  # largest first; buffers all in RAM
                    whole = self.group_working(group, n, h, w)
                    if whole is None:
                        continue
                    live = self.split.live_bytes(n, h, w, group)
                    during = live[group[0]]  # the group's step: steps before it are single
                    need = max(work + max(live), whole + io + during)
                    if need <= room:
                        return Plan(need, True, tile, max(live), group)
                ram = min(buffers, room - work)
                return Plan(work + ram, True, tile, ram)
        raise MemoryTooSmall(
            f"a batch of {n} {w}x{h} images needs at least "
            f"{format_size(self.tile_working(n, MIN_TILE) + io)} even in {MIN_TILE}-px tiles "
            f"(input and output alone {format_size(io)}) and {format_size(room)} is free for "
            f"it; {self.budget.describe()}")

    def check(self, n: int, h: int, w: int) -> None:
        """Raise :class:`MemoryTooSmall` now for a batch that can never run here."""
        self.plan(n, h, w)

    def run(self, batch: np.ndarray) -> np.ndarray:
        n, h, w = (int(d) for d in batch.shape[:3])
        try:
            plan = self.plan(n, h, w)
        except MemoryTooSmall:
            if n == 1:
                raise
            # a batch the batcher gathered that fits only image by image
            return np.concatenate([self.run(batch[i:i + 1]) for i in range(n)])
        # an untiled run on an engine that keeps memory reuses what it kept (no larger run)
        reuse = not plan.tiled and getattr(self._engine, "keeps_working_memory", False)
        with self.budget.hold(self, plan.reserve, reuse=reuse):
            engine = self._ensure()
            try:
                if not plan.tiled:
                    self.runs["untiled"] += 1
                    return engine.run(batch)
                self.runs["tiled"] += 1
                return self._tiled(engine).run(batch, tile=plan.tile, ram_bytes=max(1, plan.ram),
                                               group=plan.group)
            finally:
                if plan.tiled:
                    trim()
                elif getattr(engine, "keeps_working_memory", False):
                    # The compiled model keeps the intermediate memory of the largest shape
                    # it ran, until it is dropped: resident, so idle styles make room for it.
                    self.retained = max(self.retained, plan.reserve)
                else:
                    trim()
                self.budget.set_resident(self, self.profile.resident + self.retained)
