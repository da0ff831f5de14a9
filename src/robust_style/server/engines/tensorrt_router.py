"""Running a style on TensorRT: one session per profile, routing, CUDA fallback, warm-up.

:func:`create_router` builds, for one model, a TensorRT session per profile of
:func:`robust_style.server.engines.tensorrt.plan_profiles` (each with its own engine cache
directory; creating the session builds the engine, or loads it from the cache) and one
CUDA-EP session for the shapes no profile holds. :class:`ProfileRouter` then sends every
batch to the right one (:func:`route`) and :meth:`ProfileRouter.warm_up` runs each profile
once at its ``opt`` shape, so no engine is ever built, and no first run paid, on a request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from robust_style.server.engines.base import CPU, CUDA, TRT
from robust_style.server.engines.tensorrt import (
    Profile,
    Shape,
    TensorRTConfig,
    TensorRTEnvironment,
    detect_environment,
    engine_dirs,
    plan_profiles,
    provider_options,
)

__all__ = ["Route", "route", "ProfileRouter", "create_router", "TRT", "CUDA", "CPU"]

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Route:
    """Where a batch runs: ``profile`` index (None = fallback) and the chunk size."""

    profile: int | None
    chunk: int


def route(profiles: Sequence[Profile], shape: Shape) -> Route:
    """Pick the profile for ``shape``; batches above its ``N_max`` are cut into chunks.

    Among the profiles whose box holds one ``h x w`` image, those that take the whole batch
    win; then the one whose ``opt`` is closest in pixels (TensorRT tuned its kernels
    there). No profile holds the image: ``Route(None, n)``, the fallback session.
    """
    n, h, w = shape
    fitting = [i for i, p in enumerate(profiles) if p.fits_image(h, w)]
    if not fitting:
        return Route(None, n)
    whole = [i for i in fitting if profiles[i].max[0] >= n]
    if whole:
        def distance(i: int) -> float:
            o = profiles[i].opt
            return abs(math.log((n * h * w) / (o[0] * o[1] * o[2])))
        best = min(whole, key=distance)
        return Route(best, n)
    best = max(fitting, key=lambda i: profiles[i].max[0])
    return Route(best, profiles[best].max[0])


class Session(Protocol):
    def run(self, output_names: list[str] | None, feed: dict[str, np.ndarray]) -> list[Any]: ...


class ProfileRouter:
    """Runs each batch on the session of its profile, or on the fallback session.

    ``sessions[i]`` serves ``profiles[i]``. ``on_fallback(shape)`` is called for every batch
    that fits no profile (the server counts it in its metrics); the first fallback of each
    ``h x w`` is logged as a warning, the rest at debug level.
    """

    def __init__(self, profiles: Sequence[Profile], sessions: Sequence[Session],
                 fallback: Session, input_name: str, output_name: str,
                 on_fallback: Callable[[Shape], None] | None = None) -> None:
        if len(profiles) != len(sessions):
            raise ValueError("one session per profile")
        self.profiles, self.sessions, self.fallback = tuple(profiles), tuple(sessions), fallback
        self.input_name, self.output_name = input_name, output_name
        self.on_fallback = on_fallback
        self.fallbacks = 0
        #: Filled by :func:`create_router`: per profile, engine cached or built, seconds.
        self.report: list[dict[str, Any]] = []
        self._warned: set[tuple[int, int]] = set()
        self._lock = threading.Lock()

    def _run(self, sess: Session, x: np.ndarray) -> np.ndarray:
        return sess.run([self.output_name], {self.input_name: x})[0]

    def run(self, batch: np.ndarray) -> np.ndarray:
        n, h, w = (int(d) for d in batch.shape[:3])
        r = route(self.profiles, (n, h, w))
        if r.profile is None:
            with self._lock:
                self.fallbacks += 1
                first = (h, w) not in self._warned
                self._warned.add((h, w))
            (log.warning if first else log.debug)(
                "%dx%dx%d fits no TensorRT profile (%s); running it on the CUDA fallback",
                n, h, w, ", ".join(f"{p.name} <= {p.max}" for p in self.profiles))
            if self.on_fallback is not None:
                self.on_fallback((n, h, w))
            return self._run(self.fallback, batch)
        sess = self.sessions[r.profile]
        if r.chunk >= n:
            return self._run(sess, batch)
        return np.concatenate([self._run(sess, batch[i:i + r.chunk])
                               for i in range(0, n, r.chunk)])

    def run_each(self, batch: np.ndarray) -> list[np.ndarray]:
        """``batch`` on every profile session whose box holds it (for the accuracy gate:
        each profile is its own engine, with its own kernels)."""
        n, h, w = (int(d) for d in batch.shape[:3])
        shape: Shape = (n, h, w)
        return [self._run(sess, batch) for p, sess in zip(self.profiles, self.sessions,
                                                           strict=True) if p.fits(shape)]

    def warm_up(self) -> list[tuple[str, Shape]]:
        """One run at each profile's ``opt`` shape (and a small one on the fallback).

        With explicit profiles the engines are built when the sessions are created; this
        run makes the first request of each profile as fast as the next ones.
        """
        done = []
        for p, sess in zip(self.profiles, self.sessions, strict=True):
            self._run(sess, np.full((*p.opt, 3), 128, dtype=np.uint8))
            done.append((p.name, p.opt))
        self._run(self.fallback, np.full((1, 64, 64, 3), 128, dtype=np.uint8))
        done.append(("fallback", (1, 64, 64)))
        return done


def create_router(model: bytes, sha256: str, cfg: TensorRTConfig, session_options: Any,
                  fp16: bool, input_name: str, output_name: str,
                  env: TensorRTEnvironment | None = None,
                  on_fallback: Callable[[Shape], None] | None = None,
                  cudnn_conv_algo_search: str = "HEURISTIC") -> ProfileRouter:
    """TensorRT sessions for every profile of ``cfg`` plus the CUDA fallback, warmed up.

    Raises if TensorRT is not really used by a session (no GPU, no TensorRT libraries):
    the caller then falls back to the CUDA or CPU providers. ``router.report`` says, per
    profile, whether the engine came from the cache and how long it took.
    """
    import onnxruntime as ort

    env = env or detect_environment(cfg.device_id)
    precision = "fp16" if fp16 else "fp32"
    cuda = (CUDA, {"device_id": cfg.device_id, "cudnn_conv_algo_search": cudnn_conv_algo_search})
    profiles = plan_profiles(cfg)
    sessions, report = [], []
    for p in profiles:
        engine_dir, timing_dir = engine_dirs(cfg, sha256, p, precision, env)
        cached = bool(engine_dir and any(Path(engine_dir).glob("*.engine")))
        opts = provider_options(p, cfg, engine_dir, timing_dir, fp16=fp16, input_name=input_name)
        t0 = time.monotonic()
        sess = ort.InferenceSession(model, session_options, providers=[(TRT, opts), cuda, CPU])
        if sess.get_providers()[0] != TRT:
            raise RuntimeError(f"TensorRT is not usable here (providers: {sess.get_providers()})")
        sessions.append(sess)
        report.append({"profile": p.name, "min": p.min, "opt": p.opt, "max": p.max,
                       "precision": precision, "engine_cached": cached,
                       "session_seconds": round(time.monotonic() - t0, 3),
                       "engine_dir": engine_dir or ""})
    fallback = ort.InferenceSession(model, session_options, providers=[cuda, CPU])
    router = ProfileRouter(profiles, sessions, fallback, input_name, output_name, on_fallback)
    t0 = time.monotonic()
    router.warm_up()
    router.report = report
    for r in report:
        log.info("TensorRT %s engine %s %s..%s (opt %s) %s in %.1f s", precision, r["profile"],
                 r["min"], r["max"], r["opt"], "loaded from the cache" if r["engine_cached"]
                 else "built", r["session_seconds"])
    log.info("TensorRT warm-up at the opt shapes: %.2f s", time.monotonic() - t0)
    return router
