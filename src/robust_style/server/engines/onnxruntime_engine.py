"""The ONNX Runtime engine: TensorRT -> CUDA -> CPU execution providers, by probing.

``onnxruntime.get_available_providers()`` lists CUDA and TensorRT whenever onnxruntime-gpu
is installed, GPU or not, so each accelerated provider is tried on a real session and
kept only if the session really uses it (:func:`probe_providers`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from robust_style.errors import first_line
from robust_style.server.engines.base import (
    CPU,
    CUDA,
    TRT,
    FallbackListener,
    PartRunner,
    cpu_budget,
)
from robust_style.server.engines.tensorrt import TensorRTConfig
from robust_style.server.engines.tensorrt_router import ProfileRouter, create_router

__all__ = ["ProviderConfig", "OnnxRuntimeEngine", "probe_providers", "session_options",
           "check_io", "CPU", "CUDA", "TRT"]

log = logging.getLogger(__name__)


Providers = list[tuple[str, dict[str, Any]]]


@dataclass(frozen=True)
class ProviderConfig:
    """Execution provider choice and thread settings.

    ``device``: ``auto`` (TensorRT -> CUDA -> CPU, by probing), ``tensorrt``, ``cuda`` or
    ``cpu``. ``cudnn_conv_algo_search``: ``HEURISTIC`` (default), ``EXHAUSTIVE`` (benchmarks
    every convolution algorithm on each new input shape: ~1 s per shape, then faster) or
    ``DEFAULT``. Threads: 0 = ONNX Runtime's default (one per core);
    ``intra_op_threads`` is also the OpenVINO engine's thread count.
    """

    device: str = "auto"
    device_id: int = 0
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    cudnn_conv_algo_search: str = "HEURISTIC"
    trt_fp16: bool = True
    trt_cache_dir: str = ""
    #: TensorRT optimisation profiles (from the server limits; see
    #: :mod:`robust_style.server.engines.tensorrt`); its fp16, cache dir and device come from above.
    tensorrt: TensorRTConfig = field(default_factory=TensorRTConfig)

    def trt_config(self) -> TensorRTConfig:
        return dataclasses.replace(self.tensorrt, fp16=self.trt_fp16,
                                   cache_dir=self.trt_cache_dir, device_id=self.device_id)

    def candidates(self) -> Providers:
        cuda = (CUDA, {"device_id": self.device_id,
                       "cudnn_conv_algo_search": self.cudnn_conv_algo_search})
        trt_opts: dict[str, Any] = {"device_id": self.device_id, "trt_fp16_enable": self.trt_fp16}
        if self.trt_cache_dir:
            trt_opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=self.trt_cache_dir,
                            trt_timing_cache_enable=True)
        order = {"auto": [(TRT, trt_opts), cuda], "tensorrt": [(TRT, trt_opts), cuda],
                 "cuda": [cuda], "cpu": []}
        if self.device not in order:
            raise ValueError(f"unknown device {self.device!r}; use auto, tensorrt, cuda or cpu")
        return order[self.device]


def session_options(cfg: ProviderConfig, quiet: bool = False) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = cfg.intra_op_threads
    so.inter_op_num_threads = cfg.inter_op_threads
    so.log_severity_level = 4 if quiet else 3
    # No CPU memory arena: the arena keeps the peak of every run for the session's life,
    # so a style that once ran a large image would hold that memory forever; the memory
    # budget (robust_style.server.memory) needs runs to give their memory back.
    so.enable_cpu_mem_arena = False
    return so


def probe_providers(cfg: ProviderConfig, model: bytes) -> Providers:
    """The provider list to use: the first accelerated candidate that really works, + CPU."""
    available = set(ort.get_available_providers())
    for name, opts in cfg.candidates():
        if name not in available:
            log.info("provider %s not in this onnxruntime build", name)
            continue
        cache = opts.get("trt_engine_cache_path")
        if cache:  # onnxruntime creates only the last level of the cache path
            try:
                Path(cache).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                log.warning("cannot create the TensorRT engine cache %s: %s", cache, exc)
        try:
            ort.set_default_logger_severity(4)
            # onnxruntime print()s "EP Error ... Falling back" when a provider fails.
            with contextlib.redirect_stdout(io.StringIO()):
                sess = ort.InferenceSession(model, session_options(cfg, quiet=True),
                                            providers=[(name, opts), CPU])
            used = sess.get_providers()
        except Exception as exc:
            log.info("provider %s unusable: %s", name, first_line(exc))
            continue
        finally:
            ort.set_default_logger_severity(3)
        if name in used:
            chosen = [c for c in cfg.candidates() if c[0] == name or name == TRT] + [(CPU, {})]
            log.info("execution providers: %s", [n for n, _ in chosen])
            return chosen
        log.info("provider %s listed but not usable here (no device); skipping", name)
    if cfg.device in ("cuda", "tensorrt"):
        log.warning("device %r requested but not usable; falling back to CPU", cfg.device)
    log.info("execution providers: ['%s']", CPU)
    return [(CPU, {})]


def check_io(sess: ort.InferenceSession) -> tuple[str, str]:
    """Input and output names, after checking the uint8 NHWC contract."""
    ins, outs = sess.get_inputs(), sess.get_outputs()
    if len(ins) != 1 or len(outs) != 1:
        raise ValueError(f"expected 1 input and 1 output, found {len(ins)} and {len(outs)}")
    for kind, t in (("input", ins[0]), ("output", outs[0])):
        if t.type != "tensor(uint8)" or len(t.shape) != 4:
            raise ValueError(f"{kind} {t.name!r} is {t.type} {t.shape}; the contract is uint8 "
                             "NHWC [N,H,W,3] (see robust_style.contract)")
    return ins[0].name, outs[0].name


def _without_fp16(providers: Providers) -> Providers:
    return [(n, {**o, "trt_fp16_enable": False} if n == TRT else o) for n, o in providers]


class OnnxRuntimeEngine:
    """One ``onnxruntime.InferenceSession``; ``providers`` as :func:`probe_providers` chose.

    On TensorRT the engine is a :class:`~robust_style.server.engines.tensorrt_router.ProfileRouter`
    instead: one session per optimisation profile plus a CUDA fallback, engines built and
    warmed up here (never on a request). ``precision`` is ``fp16`` when TensorRT runs with
    ``trt_fp16_enable``, else ``fp32``; ``fp32=True`` turns TensorRT's fp16 off (the
    accuracy gate's fallback). ``on_fallback(shape)`` (settable) hears of every batch that
    fits no TensorRT profile.
    """

    name = "onnxruntime"

    def __init__(self, model: bytes, cfg: ProviderConfig, providers: Providers,
                 fp32: bool = False) -> None:
        if fp32:
            providers = _without_fp16(providers)
        self.router: ProfileRouter | None = None
        self.on_fallback: Callable[[tuple[int, int, int]], None] | None = None
        so = session_options(cfg)
        if providers[0][0] == TRT:
            fp16 = bool(providers[0][1].get("trt_fp16_enable"))
            probe = ort.InferenceSession(model, so, providers=[CPU])
            names = check_io(probe)
            try:
                self.router = create_router(
                    model, hashlib.sha256(model).hexdigest(), cfg.trt_config(), so, fp16,
                    *names, on_fallback=self._fallback,
                    cudnn_conv_algo_search=cfg.cudnn_conv_algo_search)
            except Exception as exc:
                log.warning("TensorRT engines failed (%s: %s); using the CUDA provider",
                            type(exc).__name__, first_line(exc)
                            if str(exc).strip() else "")
                providers = [p for p in providers if p[0] != TRT]
        if self.router is not None:
            # the router's sessions are onnxruntime sessions (typed by their ``run`` only)
            self.session: ort.InferenceSession = self.router.sessions[-1]
            self.precision = "fp16" if fp16 else "fp32"
        else:
            self.session = ort.InferenceSession(model, so, providers=providers)
            self.precision = "fp32"
        self.input_name, self.output_name = check_io(self.session)
        self.devices: tuple[str, ...] = tuple(self.session.get_providers())
        self.on_cpu = self.devices[0] == CPU
        self._threads = cfg.intra_op_threads
        self._cfg = cfg
        # Parts (tiling segments) run on the providers the session uses; TensorRT's
        # profiles are for the whole network, so parts on TensorRT run on CUDA.
        self._part_providers = [p for p in providers if p[0] != TRT] or [(CPU, {})]

    def _fallback(self, shape: tuple[int, int, int]) -> None:
        if self.on_fallback is not None:
            self.on_fallback(shape)

    def gate_outputs(self, batch: np.ndarray) -> list[np.ndarray]:
        """``batch`` through every TensorRT profile's session (for the accuracy gate)."""
        if self.router is None:
            return []
        return self.router.run_each(batch)

    @property
    def metadata(self) -> dict[str, str]:
        """The model file's custom metadata (``robust_style.*``)."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.router is not None:
            return self.router.run(batch)
        if not self.on_cpu:
            return self.session.run([self.output_name], {self.input_name: batch})[0]
        with cpu_budget().hold(self._threads):
            return self.session.run([self.output_name], {self.input_name: batch})[0]

    def set_fallback_listener(self, listener: FallbackListener | None) -> None:
        self.on_fallback = listener

    def compile_part(self, model: bytes) -> PartRunner:
        """A graph of any inputs and outputs (a tiling segment) on this engine's runtime."""
        sess = ort.InferenceSession(model, session_options(self._cfg),
                                    providers=self._part_providers)
        names = [o.name for o in sess.get_outputs()]
        on_cpu = sess.get_providers()[0] == CPU
        threads = self._threads

        def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            if not on_cpu:
                return list(sess.run(names, feeds))
            with cpu_budget().hold(threads):
                return list(sess.run(names, feeds))

        return PartRunner(run)

    def describe(self) -> str:
        return f"onnxruntime {self.precision} ({', '.join(self.devices)})"
