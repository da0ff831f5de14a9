"""The model registry: ONNX Runtime sessions per style, provider probing, hot reload.

Every ``*.onnx`` file in the models directory is a style (name from its
``robust_style.name`` metadata, else the file name). The registry polls the directory
every ``poll_seconds``: a new or changed file (size/mtime, then sha256 of the content) is
loaded into a new session, warmed up, and only then swapped in; requests already holding
the old :class:`StyleModel` finish on it. New and changed files are handled before removed
ones, so a rename (``mv a.onnx b.onnx``) or a new file taking over a deleted file's style
name swaps versions without a gap. A removed file removes its style. A file that fails to
load, or whose style name is invalid (:func:`robust_style.contract.valid_style_name`), is
logged and skipped (a broken replacement leaves the previous version serving) and is
retried only when it changes again. A file skipped because another file serves its style
name is retried as soon as that name is free again.

Providers are chosen by *probing*: ``onnxruntime.get_available_providers()`` lists CUDA
and TensorRT whenever onnxruntime-gpu is installed, GPU or not, so each accelerated
provider is tried on a real session and kept only if the session really uses it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from robust_style.contract import StyleMetadata, parse_metadata, valid_style_name
from robust_style.server.batching import BatchConfig, Batcher
from robust_style.server.metrics import Metrics

__all__ = ["ProviderConfig", "RegistryConfig", "StyleModel", "ModelRegistry", "probe_providers"]

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TRT = "TensorrtExecutionProvider"


@dataclass(frozen=True)
class ProviderConfig:
    """Execution provider choice and thread settings.

    ``device``: ``auto`` (TensorRT -> CUDA -> CPU, by probing), ``tensorrt``, ``cuda`` or
    ``cpu``. ``cudnn_conv_algo_search``: ``HEURISTIC`` (default), ``EXHAUSTIVE`` (benchmarks
    every convolution algorithm on each new input shape: ~1 s per shape, then faster) or
    ``DEFAULT``. Threads: 0 = ONNX Runtime's default.
    """

    device: str = "auto"
    device_id: int = 0
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    cudnn_conv_algo_search: str = "HEURISTIC"
    trt_fp16: bool = True
    trt_cache_dir: str = ""

    def candidates(self) -> list[tuple[str, dict[str, Any]]]:
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


@dataclass(frozen=True)
class RegistryConfig:
    models_dir: Path
    providers: ProviderConfig = field(default_factory=ProviderConfig)
    #: ``max_batch=0`` means automatic: 8 on a GPU, 1 (no batching) on a CPU.
    batch: BatchConfig = field(default_factory=lambda: BatchConfig(max_batch=0))
    poll_seconds: float = 2.0
    warmup_side: int = 128


def _session_options(cfg: ProviderConfig, quiet: bool = False) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = cfg.intra_op_threads
    so.inter_op_num_threads = cfg.inter_op_threads
    so.log_severity_level = 4 if quiet else 3
    return so


def probe_providers(cfg: ProviderConfig, model: bytes) -> list[tuple[str, dict[str, Any]]]:
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
                sess = ort.InferenceSession(model, _session_options(cfg, quiet=True),
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


@dataclass(frozen=True, eq=False)
class StyleModel:
    """One loaded, warmed-up style. Immutable; hot reload replaces the whole object."""

    name: str
    version: str
    file: str
    sha256: str
    metadata: StyleMetadata
    session: ort.InferenceSession
    input_name: str
    output_name: str
    providers: tuple[str, ...]

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]


@dataclass
class _FileState:
    signature: tuple[int, int]
    sha256: str
    style: str | None  # None: failed to load
    #: The style name this file would serve but another file already serves it.
    waiting_for: str | None = None


def _check_io(sess: ort.InferenceSession) -> tuple[str, str]:
    ins, outs = sess.get_inputs(), sess.get_outputs()
    if len(ins) != 1 or len(outs) != 1:
        raise ValueError(f"expected 1 input and 1 output, found {len(ins)} and {len(outs)}")
    for kind, t in (("input", ins[0]), ("output", outs[0])):
        if t.type != "tensor(uint8)" or len(t.shape) != 4:
            raise ValueError(f"{kind} {t.name!r} is {t.type} {t.shape}; the contract is uint8 "
                             "NHWC [N,H,W,3] (see robust_style.contract)")
    return ins[0].name, outs[0].name


class ModelRegistry:
    """Styles by name, with their batchers; see the module docstring."""

    def __init__(self, config: RegistryConfig, metrics: Metrics | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self.config, self.metrics, self._on_change = config, metrics or Metrics(), on_change
        self._styles: dict[str, StyleModel] = {}
        self._batchers: dict[str, Batcher] = {}
        self._files: dict[str, _FileState] = {}
        self._providers: list[tuple[str, dict[str, Any]]] | None = None
        self._current: dict[str, Path] = {}
        self._freed: set[str] = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.scanned = threading.Event()

    # -- lookup ---------------------------------------------------------------------------
    def get(self, name: str) -> tuple[StyleModel, Batcher]:
        """The current model and batcher of ``name``; KeyError if unknown."""
        with self._lock:
            return self._styles[name], self._batchers[name]

    def has(self, name: str) -> bool:
        """True if ``name`` is a loaded style."""
        with self._lock:
            return name in self._styles

    def styles(self) -> list[StyleModel]:
        with self._lock:
            return sorted(self._styles.values(), key=lambda m: m.name)

    @property
    def on_gpu(self) -> bool:
        return bool(self._providers) and self._providers[0][0] != CPU

    @property
    def batch_config(self) -> BatchConfig:
        b = self.config.batch
        if b.max_batch <= 0:
            b = dataclasses.replace(b, max_batch=8 if self.on_gpu else 1)
        return b

    # -- loading --------------------------------------------------------------------------
    def scan(self) -> bool:
        """One pass over the directory; returns True if the set of styles changed."""
        changed = False
        root = self.config.models_dir
        try:
            current = {p.name: p for p in sorted(root.glob("*.onnx"))
                       if not p.name.startswith(".") and p.is_file()}
        except OSError as exc:
            log.error("cannot list %s: %s", root, exc)
            current = {}
        self._current = current
        gone = sorted(set(self._files) - set(current))
        # Files waiting for the name of a style whose file is gone may take it over now,
        # before the removal, so the style never disappears in between.
        self._retry_waiting({s for f in gone if (s := self._files[f].style)})
        for fname, path in current.items():
            changed |= self._scan_file(fname, path)
        for fname in gone:
            state = self._files.pop(fname)
            if state.style is not None:
                changed |= self._remove(state.style, fname)
        while self._freed:  # names freed by removals or renames: let waiting files load
            freed, self._freed = self._freed, set()
            for fname in self._retry_waiting(freed):
                changed |= self._scan_file(fname, current[fname])
        self.scanned.set()
        if changed and self._on_change:
            self._on_change()
        return changed

    def _retry_waiting(self, names: set[str]) -> list[str]:
        """Forget files skipped for one of ``names`` so the next look loads them."""
        files = sorted(f for f, st in self._files.items()
                       if st.waiting_for in names and f in self._current)
        for f in files:
            del self._files[f]
        return files

    def _scan_file(self, fname: str, path: Path) -> bool:
        try:
            st = path.stat()
            sig = (st.st_mtime_ns, st.st_size)
            known = self._files.get(fname)
            if known and known.signature == sig:
                return False
            data = path.read_bytes()
            st2 = path.stat()
            if (st2.st_mtime_ns, st2.st_size) != sig or len(data) != st.st_size:
                log.info("%s is still being written; next poll", fname)
                return False
        except OSError as exc:
            log.warning("cannot read %s: %s", path, exc)
            return False
        sha = hashlib.sha256(data).hexdigest()
        if known and known.sha256 == sha:
            known.signature = sig
            return False
        try:
            model = self._load(fname, path, data, sha)
        except Exception as exc:  # noqa: BLE001 - a bad file must not disturb the others
            msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            log.error("skipping %s: cannot load it as a style model: %s", path, msg)
            self.metrics.reloads.inc((("style", path.stem), ("result", "failed")))
            keep = known.style if known else None
            self._files[fname] = _FileState(sig, sha, keep)
            return False
        with self._lock:
            other = self._styles.get(model.name)
            if other is not None and other.file != fname and other.file in self._current:
                log.error("skipping %s: style name %r is already served from %s", fname,
                          model.name, other.file)
                self._files[fname] = _FileState(sig, sha, None, waiting_for=model.name)
                return False
            # (other.file gone from the directory: this file takes its style over)
            if known and known.style and known.style != model.name:
                self._remove(known.style, fname)
            self._styles[model.name] = model
            if model.name not in self._batchers:
                self._batchers[model.name] = Batcher(model.name, self.batch_config, self.metrics)
            self._files[fname] = _FileState(sig, sha, model.name)
            self.metrics.models.set((), len(self._styles))
        self.metrics.reloads.inc((("style", model.name), ("result", "ok")))
        log.info("%s style %r version %s from %s (%s)", "reloaded" if known else "loaded",
                 model.name, model.version, fname, ", ".join(model.providers))
        return True

    def _remove(self, style: str, fname: str) -> bool:
        with self._lock:
            model = self._styles.get(style)
            if model is None or model.file != fname:
                return False
            del self._styles[style]
            batcher = self._batchers.pop(style)
            self.metrics.models.set((), len(self._styles))
        batcher.stop(wait=False, removed=True)  # queued requests still run on their model
        self._freed.add(style)
        self.metrics.reloads.inc((("style", style), ("result", "removed")))
        log.info("removed style %r (%s deleted)", style, fname)
        return True

    def _load(self, fname: str, path: Path, data: bytes, sha: str) -> StyleModel:
        cfg = self.config.providers
        # The probe result is kept only once a session built with it has loaded and run:
        # a corrupt first file must not pin the server to CPU.
        providers = self._providers or probe_providers(cfg, data)
        sess = ort.InferenceSession(data, _session_options(cfg), providers=providers)
        input_name, output_name = _check_io(sess)
        props = dict(sess.get_modelmeta().custom_metadata_map)
        meta = parse_metadata(props, default_name=path.stem)
        if not valid_style_name(meta.name or path.stem):
            raise ValueError(f"invalid style name {(meta.name or path.stem)!r} (use letters, "
                             "digits, '_', '.', '-'; starting with a letter or digit)")
        model = StyleModel(name=meta.name or path.stem, version=sha[:12], file=fname,
                           sha256=sha, metadata=meta, session=sess, input_name=input_name,
                           output_name=output_name, providers=tuple(sess.get_providers()))
        side = max(8, self.config.warmup_side)
        out = model.run(np.full((1, side, side, 3), 128, dtype=np.uint8))
        if out.shape != (1, side, side, 3) or out.dtype != np.uint8:
            raise ValueError(f"warm-up returned {out.dtype} {out.shape}, expected uint8 "
                             f"(1, {side}, {side}, 3)")
        self._providers = providers
        return model

    # -- watching -------------------------------------------------------------------------
    def start_watching(self) -> None:
        """Poll the directory every ``poll_seconds`` in a daemon thread (0 = never)."""
        if self.config.poll_seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._watch, name="model-watcher", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.scan()
            except Exception:  # noqa: BLE001 - the watcher must survive anything
                log.exception("model directory scan failed")

    def stop(self) -> None:
        """Stop watching and end the batchers (after what they have queued)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            batchers = list(self._batchers.values())
        for b in batchers:
            b.stop()
