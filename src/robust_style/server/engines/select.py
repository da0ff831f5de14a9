"""Engine selection per style, with the load-time accuracy gate.

:class:`EngineSelector` turns an :class:`EngineConfig` and a model's bytes into a ready
engine. ``auto`` picks on evidence: ONNX Runtime when a GPU provider really works (probed
once, :func:`.onnxruntime_engine.probe_providers`), else OpenVINO if it imports and has a
CPU device, in bf16 where that CPU has bf16 arithmetic, else ONNX Runtime's CPU provider.

Accuracy gate: every model is first loaded on ONNX Runtime's CPU provider in fp32, the
reference, which also checks the tensor contract and reads the metadata. Each candidate
engine then runs the fixed warm-up image (the packaged photo ``models/sample.jpg``,
centre-cropped to ``warmup_side``²) and its output is compared with the reference's:
below ``gate_psnr_db`` (default 45 dB) the candidate is refused, logged with the figure
and the next one tried (int8 -> bf16 -> fp32 -> ONNX Runtime).

int8 (issue 23): where NNCF is installed, OpenVINO's candidates start with the model
quantised by ``nncf.quantize`` on crops of the packaged photo (:func:`calibration_images`).
It must pass the gate like bf16, and is then kept only if it runs the warm-up image at
least :data:`INT8_MIN_SPEEDUP` times faster than the engine chosen without it; the
``engine_note`` says which, with the figures. On the networks measured here it fails the
gate (~29-32 dB: instance norm after int8 activations), so it is refused, and said so. The reference itself always
passes, so a model that loads at all is served, and never at a silent loss of quality.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from robust_style.errors import first_line
from robust_style.server.engines.base import ENGINES, GATE_PSNR_DB, PRECISIONS, Engine, psnr
from robust_style.server.engines.onnxruntime_engine import (
    CPU,
    OnnxRuntimeEngine,
    ProviderConfig,
    Providers,
    probe_providers,
)
from robust_style.server.engines.openvino_engine import OpenVINOEngine, openvino_status
from robust_style.server.engines.quantize import nncf_status

__all__ = ["INT8_MIN_SPEEDUP", "EngineConfig", "EngineSelector", "LoadedEngine",
           "calibration_images", "warmup_image"]

#: int8 is kept only when its warm-up run is at least this much faster than the engine
#: it would replace (timing noise on a shared CPU is ~5-10%).
INT8_MIN_SPEEDUP = 1.1

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineConfig:
    """Which engine and precision each style gets (``robust-style serve --engine ...``).

    ``engine``: ``auto`` (see the module docstring), ``onnxruntime`` or ``openvino``.
    ``precision``: ``auto`` = bf16 on OpenVINO where the CPU has bf16 arithmetic (its
    ``OPTIMIZATION_CAPABILITIES`` list BF16: AVX-512 BF16 or AMX), fp32 otherwise; on
    TensorRT ``providers.trt_fp16`` decides; ``fp32``; ``bf16`` (fp32 where the engine or
    CPU cannot, noted). ``gate_psnr_db``: the accuracy gate (0 = accept any PSNR).
    ``providers``: ONNX Runtime settings; its ``intra_op_threads`` is the thread count of
    *both* engines (0 = one per core).
    """

    engine: str = "auto"
    precision: str = "auto"
    gate_psnr_db: float = GATE_PSNR_DB
    providers: ProviderConfig = field(default_factory=ProviderConfig)

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; use {', '.join(ENGINES)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; use "
                             f"{', '.join(PRECISIONS)}")


@dataclass(frozen=True)
class LoadedEngine:
    """A warmed-up engine that passed the gate, and what was learnt on the way."""

    engine: Engine
    input_name: str
    output_name: str
    metadata: dict[str, str]
    #: Why this engine/precision (fallbacks with their figures, the gate's PSNR), or "".
    note: str
    #: PSNR of the engine's warm-up output vs the fp32 reference (inf: identical or the
    #: reference itself).
    gate_psnr_db: float
    #: Builds the same engine again (same runtime, precision, providers; no gate): how an
    #: engine evicted by the memory budget is reloaded.
    rebuild: Callable[[], Engine] | None = None


@functools.cache
def _sample() -> np.ndarray:
    from robust_style.imageio import decode_image

    return decode_image((resources.files("robust_style") / "models" / "sample.jpg").read_bytes())


def warmup_image(side: int) -> np.ndarray:
    """The fixed warm-up/gate input: the packaged photo centre-cropped to ``side``², 1xHxWx3."""
    from PIL import Image, ImageOps

    side = max(8, int(side))
    img = ImageOps.fit(Image.fromarray(_sample()), (side, side), Image.Resampling.LANCZOS)
    return np.asarray(img)[None].copy()


def calibration_images(side: int = 128) -> list[np.ndarray]:
    """int8 calibration set: the packaged photo (``models/sample.jpg``) at five crops and
    two scales, ``1xSxSx3`` uint8 each (what the served graph takes)."""
    from PIL import Image, ImageOps

    img = Image.fromarray(_sample())
    out = [np.asarray(ImageOps.fit(img, (side, side), Image.Resampling.LANCZOS,
                                   centering=(c, c)))[None].copy()
           for c in (0.0, 0.25, 0.5, 0.75, 1.0)]
    out += [np.asarray(ImageOps.fit(img, (2 * side, 2 * side), Image.Resampling.LANCZOS))[None]
            .copy()]
    return out


def _median_ms(engine: Engine, x: np.ndarray, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        engine.run(x)
        times.append(1000 * (time.perf_counter() - t))
    return float(np.median(times))


def _faster(int8: tuple[Engine, float], other: tuple[Engine, float], x: np.ndarray,
            notes: list[str]) -> tuple[Engine, float]:
    """int8 (which passed the gate) if it runs the warm-up image at least
    :data:`INT8_MIN_SPEEDUP` times faster than ``other``; the reason goes in ``notes``."""
    a, b = _median_ms(int8[0], x), _median_ms(other[0], x)
    rival = f"{other[0].name} {other[0].precision}"
    if a * INT8_MIN_SPEEDUP <= b:
        notes.append(f"int8 passed the gate ({int8[1]:.1f} dB) and ran the warm-up image in "
                     f"{a:.1f} ms vs {rival} {b:.1f} ms")
        return int8
    notes.append(f"int8 passed the gate ({int8[1]:.1f} dB) but was not faster ({a:.1f} ms vs "
                 f"{rival} {b:.1f} ms); {rival}")
    return other


class EngineSelector:
    """Builds each model's engine by :class:`EngineConfig`; probes the providers once."""

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._providers: Providers | None = None
        self._lock = threading.Lock()

    @property
    def probed(self) -> bool:
        """True once a model has loaded with the probed providers."""
        return self._providers is not None

    @property
    def on_gpu(self) -> bool:
        """True when ONNX Runtime's probed providers put the network on a GPU."""
        return bool(self._providers and self._providers[0][0] != CPU)

    def load(self, model: bytes, warmup_side: int = 128, label: str = "model") -> LoadedEngine:
        """The engine for ``model``, warmed up on ``warmup_side``² and through the gate.

        Raises if the model does not load on ONNX Runtime's CPU provider (a bad file).
        """
        cfg = self.config
        reference = OnnxRuntimeEngine(model, cfg.providers, [(CPU, {})])
        x = warmup_image(warmup_side)
        expected = reference.run(x)
        if expected.shape != x.shape or expected.dtype != np.uint8:
            raise ValueError(f"warm-up returned {expected.dtype} {expected.shape}, expected "
                             f"uint8 {x.shape}")
        with self._lock:
            providers = self._providers
        if providers is None:
            providers = (probe_providers(cfg.providers, model) if cfg.engine != "openvino"
                         else [(CPU, {})])
        chain, notes = self._plan(providers[0][0] != CPU)
        chosen: tuple[Engine, float] | None = None
        int8: tuple[Engine, float] | None = None  # passed the gate; must also be faster
        rebuild: Callable[[], Engine] = lambda: OnnxRuntimeEngine(  # noqa: E731
            model, cfg.providers, [(CPU, {})])
        for engine_name, precision in chain:
            what = f"{engine_name} {precision}"
            if engine_name == "onnxruntime" and providers[0][0] == CPU:
                chosen = (reference, math.inf)  # the reference is this very engine
                break
            try:
                engine: Engine = (OpenVINOEngine(model, precision, cfg.providers.intra_op_threads,
                                                 calibration_images() if precision == "int8"
                                                 else None)
                                  if engine_name == "openvino" else
                                  OnnxRuntimeEngine(model, cfg.providers, providers,
                                                    fp32=precision == "fp32"))
                got = engine.run(x)
            except Exception as exc:
                msg = first_line(str(exc))
                log.warning("%s: %s failed (%s: %s); trying the next engine", label, what,
                            type(exc).__name__, msg)
                notes.append(f"{what} failed ({type(exc).__name__}: {msg})")
                continue
            # Every output the engine can give for this image must pass (TensorRT: each
            # profile is its own engine with its own fp16 kernels).
            outs = [got, *getattr(engine, "gate_outputs", lambda _x: [])(x)]
            db = min((psnr(o, expected) if o.shape == expected.shape else -math.inf)
                     for o in outs)
            if db < cfg.gate_psnr_db:
                log.warning("%s: %s failed the accuracy gate: %.1f dB < %.1f dB PSNR vs fp32 "
                            "ONNX Runtime on the warm-up image; falling back", label,
                            engine.describe(), db, cfg.gate_psnr_db)
                notes.append(f"{engine.name} {engine.precision} failed the accuracy gate "
                             f"({db:.1f} dB < {cfg.gate_psnr_db:g} dB)")
                continue
            if precision == "int8":
                int8 = (engine, db)
                continue
            chosen = (engine, db)
            if engine_name == "openvino":
                rebuild = functools.partial(OpenVINOEngine, model, precision,
                                            cfg.providers.intra_op_threads)
            else:
                rebuild = functools.partial(OnnxRuntimeEngine, model, cfg.providers, providers,
                                            fp32=precision == "fp32")
            break
        if chosen is None:  # every candidate failed: the reference always works
            chosen = (reference, math.inf)
        if int8 is not None:
            chosen = _faster(int8, chosen, x, notes)
            if chosen[0] is int8[0]:  # evicted and reloaded as the same int8 engine
                rebuild = functools.partial(OpenVINOEngine, model, "int8",
                                            cfg.providers.intra_op_threads, calibration_images())
        engine, db = chosen
        if engine is not reference:
            notes.append(f"accuracy gate {db:.1f} dB vs fp32 ONNX Runtime "
                         f"(min {cfg.gate_psnr_db:g})")
        with self._lock:
            self._providers = providers  # kept only once a model has loaded with them
        note = "; ".join(notes)
        log.info("%s: engine %s%s", label, engine.describe(), f" [{note}]" if note else "")
        return LoadedEngine(engine, reference.input_name, reference.output_name,
                            reference.metadata, note, db, rebuild)

    def _plan(self, gpu: bool) -> tuple[list[tuple[str, str]], list[str]]:
        """Candidates ``(engine, precision)`` in order of preference, and notes on choices."""
        cfg, notes = self.config, []
        engine = cfg.engine
        if engine == "auto":
            engine = "onnxruntime" if gpu else "openvino"
        if engine == "openvino" and not (status := openvino_status()).available:
            notes.append(f"OpenVINO unavailable ({status.reason}); ONNX Runtime instead")
            engine = "onnxruntime"
        chain: list[tuple[str, str]] = []
        if cfg.precision == "int8" and engine != "openvino":
            notes.append("int8 requested but it is OpenVINO's (NNCF); not tried")
        if engine == "openvino" and cfg.precision in ("auto", "int8"):
            if not nncf_status():
                chain.append(("openvino", "int8"))  # gated, then kept only if faster
            elif cfg.precision == "int8":
                notes.append(f"int8 requested but NNCF is unavailable ({nncf_status()})")
        if engine == "openvino":
            bf16 = openvino_status().bf16
            if cfg.precision in ("auto", "bf16", "int8") and bf16:
                chain.append(("openvino", "bf16"))
            elif cfg.precision == "bf16":
                notes.append("bf16 requested but this CPU has no bf16 arithmetic (OpenVINO "
                             "OPTIMIZATION_CAPABILITIES); fp32")
            chain.append(("openvino", "fp32"))
        else:
            if cfg.precision == "bf16":
                notes.append("bf16 requested but ONNX Runtime has no bf16 path here; fp32")
            if gpu and cfg.precision == "auto":
                chain.append(("onnxruntime", "auto"))  # TensorRT fp16 if providers allow it
        chain.append(("onnxruntime", "fp32"))
        return chain, notes
