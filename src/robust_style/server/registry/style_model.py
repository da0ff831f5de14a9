"""One loaded style (:class:`StyleModel`) and how a file becomes one (:func:`load_style`).

Each file is loaded through :class:`~robust_style.server.engines.EngineSelector`: ONNX
Runtime (providers by probing) or OpenVINO, at the precision the config and the hardware
allow, warmed up and checked by the accuracy gate before it serves. The same loading, with
no server, is :func:`load_style_file`.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robust_style.contract import StyleMetadata, parse_metadata, valid_style_name
from robust_style.server.engines import (
    Engine,
    EngineConfig,
    EngineSelector,
    LoadedEngine,
    warmup_image,
)
from robust_style.server.memory import (
    MIN_TILE,
    BudgetedEngine,
    MemoryBudget,
    MemoryProfile,
    MemoryTooSmall,
    format_size,
    peak_rss,
    reset_peak,
    resident_floor,
    rss,
    trim,
)
from robust_style.server.statistics import InferenceStatistics
from robust_style.server.tiling import SplitModel

__all__ = ["StyleModel", "load_style", "load_style_file", "budgeted", "measure_groups",
           "measure_working"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class StyleModel:
    """One loaded, warmed-up style. Immutable; hot reload replaces the whole object."""

    name: str
    version: str
    file: str
    sha256: str
    metadata: StyleMetadata
    engine: Engine
    input_name: str
    output_name: str
    #: Why this engine/precision (fallbacks and their figures, the accuracy gate's PSNR).
    engine_note: str = ""
    #: PSNR of the engine vs fp32 ONNX Runtime on the warm-up image (inf = identical).
    gate_psnr_db: float = math.inf
    #: Triton-style inference statistics of this version (``ModelStatistics``).
    stats: InferenceStatistics = field(default_factory=InferenceStatistics)

    @property
    def providers(self) -> tuple[str, ...]:
        """ONNX Runtime execution providers, or the OpenVINO device."""
        return self.engine.devices

    @property
    def engine_name(self) -> str:
        return self.engine.name

    @property
    def precision(self) -> str:
        return self.engine.precision

    def engine_info(self) -> dict[str, str]:
        """Engine facts as strings (for KServe model config ``parameters``, logs, metrics)."""
        return {"engine": self.engine.name, "precision": self.engine.precision,
                "devices": ", ".join(self.engine.devices), "engine_note": self.engine_note,
                "memory": self.memory_state()}

    def memory_state(self) -> str:
        """Under a memory budget: loaded or evicted, resident size, working memory per
        pixel, whether large images are tiled ("" without a budget)."""
        e = self.engine
        if not isinstance(e, BudgetedEngine):
            return ""
        p = e.profile
        where = "loaded" if e.loaded else "evicted (reloads on demand)"
        tiling = "tiled beyond the budget" if e.split is not None else \
            f"untiled only ({e.tiling_note})"
        return (f"memory: {where}, {format_size(p.resident)} resident, "
                f"{p.per_pixel:.0f} B/px working; {tiling}")

    def describe(self) -> dict[str, Any]:
        """What the style APIs say about it (gRPC ``ListStyles``, HTTP ``GET /v1/styles``)."""
        return {"name": self.name, "version": self.version, "ready": True, "file": self.file,
                "metadata": self.metadata.to_display(), "providers": list(self.providers),
                "sha256": self.sha256, "engine": self.engine_name, "precision": self.precision,
                "engine_note": "; ".join(n for n in (self.engine_note, self.memory_state()) if n)}

    def run(self, batch: np.ndarray) -> np.ndarray:
        """``NxHxWx3 uint8`` -> the same, stylised (thread-safe)."""
        return self.engine.run(batch)


def load_style(data: bytes, selector: EngineSelector, file: str = "", sha256: str = "",
               warmup_side: int = 128, default_name: str = "style",
               budget: MemoryBudget | None = None) -> StyleModel:
    """Load model bytes through ``selector``: engine choice, warm-up, accuracy gate, metadata.

    With a ``budget`` the engine is a :class:`~robust_style.server.memory.BudgetedEngine`:
    its memory use measured here, tiled when an image does not fit, evicted when idle.
    Raises ``ValueError`` (or the runtime's error) for a file that is not a valid style,
    :class:`~robust_style.server.memory.MemoryTooSmall` when the budget cannot run it.
    """
    sha = sha256 or hashlib.sha256(data).hexdigest()
    before = rss()
    loaded = selector.load(data, warmup_side, label=file or default_name)
    engine: Engine = loaded.engine
    if budget is not None:
        engine = budgeted(loaded, data, budget, before, label=file or default_name)
    meta = parse_metadata(loaded.metadata, default_name=default_name)
    name = meta.name or default_name
    if not valid_style_name(name):
        raise ValueError(f"invalid style name {name!r} (use letters, digits, '_', '.', '-'; "
                         "starting with a letter or digit)")
    return StyleModel(name=name, version="1", file=file, sha256=sha, metadata=meta,
                      engine=engine, input_name=loaded.input_name,
                      output_name=loaded.output_name, engine_note=loaded.note,
                      gate_psnr_db=loaded.gate_psnr_db)


def budgeted(loaded: LoadedEngine, data: bytes, budget: MemoryBudget, rss_before: int,
             label: str) -> BudgetedEngine:
    """``loaded``'s engine under ``budget``, with its memory profile measured."""
    from robust_style.server.tiling import NotTileable, split_model

    try:
        tiled = split_model(data)
        split: SplitModel | None = tiled
        note = ""
        arch = repr((sorted(tiled.channels.items()), sorted(tiled.scale.items())))
    except NotTileable as exc:
        split, note, arch = None, str(exc), hashlib.sha256(data).hexdigest()
    except ImportError as exc:  # onnx missing: serve untiled within the budget
        split, note, arch = None, f"onnx not installed ({exc})", hashlib.sha256(data).hexdigest()
    if note:
        log.info("%s: served untiled within the memory budget (not tileable: %s)", label, note)
    engine = loaded.engine
    trim()
    resident = max(rss() - rss_before, resident_floor(engine.name, len(data)))
    key = (arch, engine.name, engine.precision)
    profile = budget.profiles.get(key)
    if profile is None:
        per_px, fixed = measure_working(engine, split)
        groups = measure_groups(engine, split)
        budget.profiles[key] = MemoryProfile(resident, fixed, per_px, groups)
    else:
        per_px, fixed, groups = profile.per_pixel, profile.fixed, profile.groups
    profile = MemoryProfile(resident, fixed, per_px, groups)
    rebuild = loaded.rebuild or (lambda: loaded.engine)
    out = BudgetedEngine(engine, rebuild, budget, profile, split, note)
    if out.minimum() > budget.capacity:
        budget.forget(out)
        raise MemoryTooSmall(
            f"memory budget {format_size(budget.total)} is too small for {label}: it needs at "
            f"least {format_size(budget.baseline + out.minimum())} ({format_size(budget.baseline)}"
            f" for the process, {format_size(resident)} for the engine, the rest for one "
            f"{MIN_TILE}-px tile)")
    log.info("%s: %s resident, working %.0f B/px + %s%s", label, format_size(resident), per_px,
             format_size(fixed), "" if split else " (untiled only)")
    return out


def measure_groups(engine: Engine, split: SplitModel | None, side: int = 768
                   ) -> dict[tuple[int, int], float]:
    """Working memory per working pixel of each fused group of ``split``
    (:attr:`SplitModel.groups`), from the peak RSS of one run of it on a ``side x side``
    image (its inputs made up: memory does not depend on values); as in
    :func:`measure_working`, peak over pixels, an upper bound for larger images."""
    out: dict[tuple[int, int], float] = {}
    compile_part = getattr(engine, "compile_part", None)
    if split is None or compile_part is None:
        return out
    rng = np.random.default_rng(0)
    for key, (seg, _) in split.groups.items():
        feeds: dict[str, np.ndarray] = {}
        for t, name in zip(seg.inputs, seg.feeds, strict=True):
            s = split.scale[t]
            feeds[name] = rng.standard_normal((1, split.channels[t], side // s, side // s)
                                              ).astype(split.dtype[t])
        for j in seg.norms:
            c = len(split.norms[j][1])
            feeds[f"rs_norm{j}_mul"] = np.ones((1, c, 1, 1), np.float32)
            feeds[f"rs_norm{j}_add"] = np.zeros((1, c, 1, 1), np.float32)
        ts = split.scale[seg.outputs[0]]
        feeds["rs_crop_starts"] = np.zeros(2, np.int64)
        feeds["rs_crop_ends"] = np.full(2, side // ts, np.int64)
        trim()
        base = rss()
        if not reset_peak():
            return {}
        part = compile_part(seg.model)
        part.run(feeds)
        out[key] = max(0, peak_rss() - base) / (side * side)
        del part
        trim()
    return out


def measure_working(engine: Engine, split: SplitModel | None,
                    sides: tuple[int, int] = (256, 768)) -> tuple[float, int]:
    """Working memory of ``engine``: (bytes per pixel, fixed bytes), from the peak RSS of
    two warm-up runs; at least twice the largest activation (from the split's probe) per
    pixel, which is also the figure where peak RSS cannot be reset (not Linux).

    Per pixel, at least the larger run's peak over its pixels: the runtimes' working
    memory per pixel falls with size towards its asymptote (bundled style, OpenVINO fp32:
    630 B/px at 384², 586 at 768², 565 at 2048²; ONNX Runtime 1004, 779, 540), so the
    slope between two small runs under-reads it (it gave 467 B/px, and a 4 MP run that
    fitted on paper peaked 16% over a 2 GiB budget) while the larger run's ratio is an
    upper bound for every larger image."""
    floor = 0.0
    if split is not None:
        floor = 2.0 * max(4.0 * c / split.scale[t] ** 2 for t, c in split.channels.items())
    floor = max(floor, 64.0)
    peaks = []
    release = getattr(engine, "release_requests", lambda: None)
    for side in sides:
        x = warmup_image(side)
        release()  # a fresh request: its memory is allocated in this run, as on a new shape
        trim()
        base = rss()
        if not reset_peak():
            return floor, 0
        engine.run(x)
        peaks.append(max(0, peak_rss() - base))
    px = [s * s for s in sides]
    # 1.2: allocator fragmentation and run-to-run variation beyond the two samples
    per_px = max(floor, 1.2 * (peaks[1] - peaks[0]) / (px[1] - px[0]), peaks[1] / px[1])
    fixed = max(0, int(peaks[0] - per_px * px[0]))
    release()
    trim()
    return per_px, fixed


def load_style_file(path: Path, config: EngineConfig | None = None,
                    warmup_side: int = 128) -> StyleModel:
    """One style model file, no server: what ``serve`` would load, with the same engines."""
    path = Path(path)
    return load_style(path.read_bytes(), EngineSelector(config), file=path.name,
                      warmup_side=warmup_side, default_name=path.stem)
