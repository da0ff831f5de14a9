"""The ONNX Runtime engine: TensorRT -> CUDA -> CPU execution providers, by probing.

``onnxruntime.get_available_providers()`` lists CUDA and TensorRT whenever onnxruntime-gpu
is installed, GPU or not, so each accelerated provider is tried on a real session and
kept only if the session really uses it (:func:`probe_providers`).
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from robust_style.server.engines.base import cpu_budget

__all__ = ["ProviderConfig", "OnnxRuntimeEngine", "probe_providers", "session_options",
           "check_io", "CPU", "CUDA", "TRT"]

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"

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
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable here"
            log.info("provider %s unusable: %s", name, str(exc).splitlines()[0][:200])
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

    ``precision`` is ``fp16`` when TensorRT runs with ``trt_fp16_enable``, else ``fp32``;
    ``fp32=True`` turns TensorRT's fp16 off (the accuracy gate's fallback).
    """

    name = "onnxruntime"

    def __init__(self, model: bytes, cfg: ProviderConfig, providers: Providers,
                 fp32: bool = False) -> None:
        if fp32:
            providers = _without_fp16(providers)
        self.session = ort.InferenceSession(model, session_options(cfg), providers=providers)
        self.input_name, self.output_name = check_io(self.session)
        self.devices: tuple[str, ...] = tuple(self.session.get_providers())
        self.on_cpu = self.devices[0] == CPU
        trt = dict(providers).get(TRT, {})
        self.precision = ("fp16" if self.devices[0] == TRT and trt.get("trt_fp16_enable")
                          else "fp32")
        self._threads = cfg.intra_op_threads

    @property
    def metadata(self) -> dict[str, str]:
        """The model file's custom metadata (``robust_style.*``)."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, batch: np.ndarray) -> np.ndarray:
        if not self.on_cpu:
            return self.session.run([self.output_name], {self.input_name: batch})[0]
        with cpu_budget().hold(self._threads):
            return self.session.run([self.output_name], {self.input_name: batch})[0]

    def describe(self) -> str:
        return f"onnxruntime {self.precision} ({', '.join(self.devices)})"
