"""The OpenVINO engine: the same ``.onnx`` bytes on the OpenVINO runtime's CPU plugin.

OpenVINO reads ONNX directly (no conversion step, no files), keeps N, H and W dynamic,
and on CPUs with bf16 arithmetic (AVX-512 BF16, AMX) runs the convolutions in bf16 when
``INFERENCE_PRECISION_HINT=bf16``: on this project's 2-core AMD EPYC the bundled style at
512x512 ran 2.3x faster than ONNX Runtime's CPU provider at ~54 dB PSNR (issue 12). bf16
support is read from the plugin's ``OPTIMIZATION_CAPABILITIES`` at run time, never assumed.
The precision is always set explicitly: OpenVINO's own default on such CPUs is already
bf16, so "fp32" must be asked for.

Streams and requests: one stream (``NUM_STREAMS=1``, ``PERFORMANCE_HINT=LATENCY``) whose
run uses ``INFERENCE_NUM_THREADS`` threads (``--intra-op-threads``; 0 = one per core):
the server's batcher runs one batch per style at a time and the process-wide CPU budget
(:mod:`.base`) keeps concurrent runs of several styles within the cores, so more streams
would only split the cores the budget already shares. Infer requests are not thread-safe;
each concurrent caller takes one from a small pool (created on demand), so local callers
on several threads work too.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from robust_style.errors import first_line
from robust_style.server.engines.base import FallbackListener, PartRunner, cpu_budget
from robust_style.server.engines.quantize import nncf_status, quantize_int8

__all__ = ["OpenVINOEngine", "OpenVINOStatus", "openvino_status"]

log = logging.getLogger(__name__)

_OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}
_LABEL = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}


@dataclass(frozen=True)
class OpenVINOStatus:
    """Whether OpenVINO's CPU plugin is usable here, and what the CPU can do."""

    available: bool
    reason: str = ""          # why not, when not
    version: str = ""
    device: str = ""          # FULL_DEVICE_NAME, e.g. "AMD EPYC"
    bf16: bool = False        # OPTIMIZATION_CAPABILITIES lists BF16


_CORE: Any = None
_CORE_LOCK = threading.Lock()


def _core() -> Any:
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            import openvino

            _CORE = openvino.Core()
        return _CORE


@functools.cache
def openvino_status() -> OpenVINOStatus:
    """Probe once per process: import openvino, find the CPU device and its capabilities."""
    try:
        import openvino

        core = _core()
        if "CPU" not in core.available_devices:
            return OpenVINOStatus(False, f"no CPU device in OpenVINO {openvino.__version__}")
        caps = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
        status = OpenVINOStatus(True, "", openvino.__version__,
                                str(core.get_property("CPU", "FULL_DEVICE_NAME")), "BF16" in caps)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {first_line(str(exc))}"
        log.info("OpenVINO unusable: %s", reason)
        return OpenVINOStatus(False, reason)
    log.info("OpenVINO %s on %s (bf16 %s)", status.version, status.device,
             "supported" if status.bf16 else "not supported")
    return status


class OpenVINOEngine:
    """One compiled model on OpenVINO's CPU plugin at ``precision`` (``fp32``/``bf16``, or
    ``int8``: quantised by NNCF on ``calibration`` images, the rest of the graph fp32)."""

    name = "openvino"
    on_cpu = True
    #: The compiled model keeps the intermediate memory of the largest shape it ran until
    #: it is dropped (dropping its infer requests does not free it; measured), so the
    #: memory budget counts a run's working memory as resident afterwards.
    keeps_working_memory = True

    def __init__(self, model: bytes, precision: str = "fp32", threads: int = 0,
                 calibration: list[np.ndarray] | None = None) -> None:
        if precision not in (*_OV_PRECISION, "int8"):
            raise ValueError("OpenVINO engine precision must be fp32, bf16 or int8, got "
                             f"{precision!r}")
        core = _core()
        int8 = precision == "int8"
        if int8:
            if nncf_status():
                raise RuntimeError(f"int8 needs NNCF ({nncf_status()})")
            if not calibration:
                raise ValueError("int8 needs calibration images")
            xml, weights = quantize_int8(model, calibration)
            import openvino

            net = core.read_model(xml, openvino.Tensor(np.frombuffer(weights, np.uint8)))
            precision = "fp32"
        else:
            net = core.read_model(model)
        if len(net.inputs) != 1 or len(net.outputs) != 1:
            raise ValueError(f"expected 1 input and 1 output, found {len(net.inputs)} and "
                             f"{len(net.outputs)}")
        props: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _OV_PRECISION[precision],
                                 "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if threads > 0:
            props["INFERENCE_NUM_THREADS"] = threads
        self._props = props
        self.compiled = core.compile_model(net, "CPU", props)
        real = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        # e.g. "<Type: 'bfloat16'>" -> bf16; the plugin may refuse bf16 on a CPU without it
        self.precision = ("int8" if int8 else "bf16" if "bf" in real else
                          "fp16" if "16" in real else "fp32")
        status = openvino_status()
        self.devices: tuple[str, ...] = (f"CPU ({status.device})" if status.device else "CPU",)
        self._threads = threads
        self._pool: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def run(self, batch: np.ndarray) -> np.ndarray:
        try:
            request = self._pool.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()
        try:
            with cpu_budget().hold(self._threads):
                # share_outputs=False copies the result out of the request's buffer, so the
                # request can be reused at once.
                out = request.infer({0: np.ascontiguousarray(batch)}, share_inputs=True,
                                    share_outputs=False)
            return np.asarray(out[0])
        finally:
            self._pool.put(request)

    def set_fallback_listener(self, listener: FallbackListener | None) -> None:
        """No profiles, so no fallbacks."""

    def release_requests(self) -> None:
        """Drop the idle infer requests (each keeps the intermediate memory of the largest
        shape it ran); the next run creates a fresh one. The memory budget calls this
        after a large run."""
        while True:
            try:
                self._pool.get_nowait()
            except queue.Empty:
                return

    def compile_part(self, model: bytes) -> PartRunner:
        """A graph of any inputs and outputs (a tiling segment), compiled as this engine is
        (an int8 engine's segments run fp32: NNCF calibrated the whole graph, not its parts)."""
        compiled = _core().compile_model(_core().read_model(model), "CPU", self._props)
        pool: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threads = self._threads

        def shared(feeds: dict[str, np.ndarray],
                   use: Callable[[list[np.ndarray]], None]) -> None:
            try:
                request = pool.get_nowait()
            except queue.Empty:
                request = compiled.create_infer_request()
            try:
                with cpu_budget().hold(threads):
                    out = request.infer({k: np.ascontiguousarray(v) for k, v in feeds.items()},
                                        share_inputs=True, share_outputs=True)
                use([out[o] for o in compiled.outputs])  # the request's buffers: not reused yet
            finally:
                pool.put(request)

        def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            got: list[np.ndarray] = []
            shared(feeds, lambda outs: got.extend(np.array(o) for o in outs))
            return got

        return PartRunner(run, shared)

    def describe(self) -> str:
        return f"openvino {self.precision} ({', '.join(self.devices)})"
