"""TensorRT through ONNX Runtime: optimisation profiles, provider options, engine cache, routing.

Why explicit profiles
---------------------
Without ``trt_profile_*_shapes`` ONNX Runtime's TensorRT EP builds an engine for the shapes
seen so far and *rebuilds it* (tens of seconds) whenever a request falls outside them
(microsoft/onnxruntime #13851). With explicit profiles the engine is built once, when the
session is created ("EP compile time"), and never adjusted afterwards; a shape outside the
profile then fails in ``IExecutionContext::setInputShape``. So every request must be routed
to a session whose profile contains its shape, and the rest go to a CUDA-EP session.

How the profiles are chosen (TensorRT's documented constraints)
---------------------------------------------------------------
* A profile is a *box* ``min <= shape <= max`` per dimension. The builder picks kernels
  "that result in the lowest runtime for the optimum input dimensions, and are valid for
  all input sizes between min and max" (``IOptimizationProfile``), so ``opt`` should be a
  typical request and the box no wider than needed.
* An execution context reserves activation memory for the *largest* shape of its profile
  (``ICudaEngine::getDeviceMemorySize``, the max over the profile). Memory therefore grows
  with the box's corner ``N_max x H_max x W_max``, not with the requests. This network keeps
  about :data:`ACTIVATION_BYTES_PER_PIXEL` bytes of activations per pixel alive (the 64-
  channel full-resolution tensors around the last upsampling; counted from the ONNX graph
  by ``scripts/count_flops.py``).
* The accepted sizes ``{8 <= h, w; h*w <= max_pixels}`` lie under a hyperbola. Any box that
  contains both ``8 x P/8`` and ``P/8 x 8`` has a corner of ``P^2/64`` pixels, and a staircase
  of boxes whose corners stay within ``r*P`` needs ``log_r(P/64)`` of them: for the default
  40 MP limit and ``r = 2``, 20 engines of ~20 GB (fp16) each. Covering extreme shapes with
  TensorRT is therefore not affordable; they are served by the CUDA EP instead.
* ONNX Runtime up to 1.31 keeps the execution context on profile 0 (the runtime switch is
  microsoft/onnxruntime PR #31624), so each profile gets its own session.

The plan (:func:`plan_profiles`; sessions and routing: :mod:`.tensorrt_router`): a ``batch``
profile for small images (``N <= max_batch``, sides up to ``batch_side``), and a ``single``
profile (``N = 1``) whose square box covers every image of at most ``trt_max_pixels`` pixels
with an aspect ratio up to ``max_aspect`` (side ``sqrt(max_aspect * trt_max_pixels)``; one
square box costs less memory than a landscape and a portrait box when ``max_aspect <= 4``),
optimised at ``opt`` (1x720x1280 by default). With the defaults (4.2 MP, aspect 2, batches
of 8 up to 512 x 512) that is about 2.2 GB of fp16 activations for ``single`` and 0.5 GB for
``batch`` per style. Batches larger than a profile's ``N_max`` are cut into chunks; shapes
outside every profile (larger images, long panoramas) run on the fallback session, logged
and counted, never an error.

Engine cache: one directory per :func:`cache_key` (model sha256, profile, precision,
TensorRT, ONNX Runtime, GPU and compute capability), so a restart reuses engines and nothing
stale is ever loaded. The timing cache is shared per TensorRT version and GPU: every style
has the same layers, so the second style's build reuses the first one's tactic timings.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from robust_style.contract import INPUT_NAME, MAX_PIXELS, MIN_SIDE, parse_dims

__all__ = ["ACTIVATION_BYTES_PER_PIXEL", "Profile", "Shape", "TensorRTConfig",
           "TensorRTEnvironment", "plan_profiles", "shape_string", "parse_shapes",
           "provider_options", "cache_key", "timing_key", "engine_dirs", "detect_environment"]

log = logging.getLogger(__name__)

#: Activation bytes alive per input pixel at the peak, counted from the ONNX graph by
#: ``scripts/count_flops.py`` (257 B in fp16 at 256, 512 and 1024 px): the full-resolution
#: 64-channel tensors around the last upsampling. TensorRT adds its tactic workspace.
ACTIVATION_BYTES_PER_PIXEL = {"fp16": 257, "fp32": 514}

Shape = tuple[int, int, int]  # (batch, height, width); channels are always 3


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimisation profile over ``(N, H, W)`` (``C`` is always 3)."""

    name: str
    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max, strict=True)):
            raise ValueError(f"profile {self.name!r}: need min <= opt <= max, got "
                             f"{self.min} {self.opt} {self.max}")

    def fits_image(self, h: int, w: int) -> bool:
        """True if an ``h x w`` image (batch 1) is inside the box."""
        return (self.min[1] <= h <= self.max[1] and self.min[2] <= w <= self.max[2]
                and self.min[0] <= 1)

    def fits(self, shape: Shape) -> bool:
        n, h, w = shape
        return self.fits_image(h, w) and self.min[0] <= n <= self.max[0]

    @property
    def corner_pixels(self) -> int:
        return self.max[0] * self.max[1] * self.max[2]

    def activation_bytes(self, precision: str) -> int:
        """Estimated activation memory the context reserves (at the box's corner)."""
        return self.corner_pixels * ACTIVATION_BYTES_PER_PIXEL[precision]


@dataclass(frozen=True)
class TensorRTConfig:
    """TensorRT settings (built by the CLI; ``max_pixels`` comes from the server limits).

    ``trt_max_pixels``: the largest image (in pixels) the ``single`` profile covers; bigger
    images run on the CUDA fallback. ``max_aspect``: longest/shortest side covered at that
    size. ``batch_side``: largest side batched on TensorRT. ``opt``: the typical request
    (N, H, W) the ``single`` engine is tuned for.
    """

    max_pixels: int = MAX_PIXELS
    max_batch: int = 8
    opt: Shape = (1, 720, 1280)
    trt_max_pixels: int = 2048 * 2048
    max_aspect: float = 2.0
    batch_side: int = 512
    fp16: bool = True
    cache_dir: str = ""
    device_id: int = 0
    max_workspace_bytes: int = 2 << 30

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_pixels < MIN_SIDE * MIN_SIDE:
            raise ValueError("max_batch must be >= 1 and max_pixels >= 64")
        if self.max_aspect < 1 or self.batch_side < MIN_SIDE or self.trt_max_pixels < 64:
            raise ValueError("max_aspect >= 1, batch_side >= 8 and trt_max_pixels >= 64 needed")


def plan_profiles(cfg: TensorRTConfig) -> tuple[Profile, ...]:
    """The profiles for ``cfg`` (see the module docstring for the reasoning)."""
    pixels = min(cfg.trt_max_pixels, cfg.max_pixels)
    side = max(MIN_SIDE, math.ceil(math.sqrt(cfg.max_aspect * pixels)))
    # Every image the server accepts is smaller than max_pixels, so no side can exceed
    # max_pixels / 8: never make the box longer than that.
    side = min(side, cfg.max_pixels // MIN_SIDE)
    lo = (1, MIN_SIDE, MIN_SIDE)
    opt = (1, *(min(max(MIN_SIDE, d), side) for d in cfg.opt[1:]))
    profiles = [Profile("single", lo, opt, (1, side, side))]  # type: ignore[arg-type]
    bside = min(cfg.batch_side, side)
    if cfg.max_batch > 1:
        o = min(512, bside)
        profiles.insert(0, Profile("batch", lo, (cfg.max_batch, o, o),
                                   (cfg.max_batch, bside, bside)))
    return tuple(profiles)


def shape_string(shape: Shape, input_name: str = INPUT_NAME) -> str:
    """ONNX Runtime's format for one input: ``image:1x720x1280x3``."""
    n, h, w = shape
    return f"{input_name}:{n}x{h}x{w}x3"


def parse_shapes(value: str) -> dict[str, list[tuple[int, ...]]]:
    """Parse a ``trt_profile_*_shapes`` string the way ONNX Runtime does.

    ``"a:1x2,b:3x4,a:5x6"`` -> ``{"a": [(1, 2), (5, 6)], "b": [(3, 4)]}``: entries are
    comma-separated ``name:dimxdim...``; repeating a name adds a profile
    (``ParseProfileShapes`` in onnxruntime's tensorrt_execution_provider_utils.h).
    """
    out: dict[str, list[tuple[int, ...]]] = {}
    for item in filter(None, value.split(",")):
        name, _, dims = item.rpartition(":")
        if not name or not dims:
            raise ValueError(f"bad profile entry {item!r}; expected name:dimxdim...")
        out.setdefault(name, []).append(parse_dims(dims))
    return out


def provider_options(profile: Profile, cfg: TensorRTConfig, engine_dir: str | None,
                     timing_dir: str | None, fp16: bool | None = None,
                     input_name: str = INPUT_NAME) -> dict[str, Any]:
    """``TensorrtExecutionProvider`` options for one profile's session.

    ``engine_dir``/``timing_dir``: where engines and tactic timings are cached (None = no
    cache). ``fp16``: overrides ``cfg.fp16`` (the accuracy gate may fall back to fp32).
    """
    opts: dict[str, Any] = {
        "device_id": cfg.device_id,
        "trt_fp16_enable": cfg.fp16 if fp16 is None else fp16,
        "trt_max_workspace_size": cfg.max_workspace_bytes,
        "trt_profile_min_shapes": shape_string(profile.min, input_name),
        "trt_profile_opt_shapes": shape_string(profile.opt, input_name),
        "trt_profile_max_shapes": shape_string(profile.max, input_name),
    }
    if engine_dir:
        opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=engine_dir)
    if timing_dir:
        opts.update(trt_timing_cache_enable=True, trt_timing_cache_path=timing_dir)
    return opts


@dataclass(frozen=True)
class TensorRTEnvironment:
    """What an engine is only valid for: TensorRT, ONNX Runtime, GPU model and capability."""

    tensorrt_version: str
    onnxruntime_version: str
    gpu_name: str
    compute_capability: str

    @property
    def available(self) -> bool:
        return bool(self.tensorrt_version and self.gpu_name)


def cache_key(model_sha256: str, profile: Profile, precision: str,
              env: TensorRTEnvironment) -> str:
    """Directory name of one engine: changes with model, profile, precision, TRT, ORT, GPU."""
    blob = json.dumps({"model": model_sha256, "profile": asdict(profile),
                       "precision": precision, "env": asdict(env)}, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:20]
    return f"{model_sha256[:12]}-{profile.name}-{precision}-{digest}"


def timing_key(env: TensorRTEnvironment) -> str:
    """Directory name of the tactic timing cache (shared by every model)."""
    raw = f"{env.tensorrt_version}|{env.gpu_name}|{env.compute_capability}"
    return "timing-" + hashlib.sha256(raw.encode()).hexdigest()[:16]


def _tensorrt_version() -> str:
    for dist in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu13-libs",
                 "tensorrt-cu12-libs", "tensorrt-libs"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    for lib in ("libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so"):
        try:
            v = int(ctypes.CDLL(lib).getInferLibVersion())
        except (OSError, AttributeError):
            continue
        # NV_TENSORRT_VERSION: major * 10000 + minor * 100 + patch since TensorRT 10,
        # major * 1000 + minor * 100 + patch before.
        major, rest = (v // 10000, v % 10000) if v >= 10000 else (v // 1000, v % 1000)
        return f"{major}.{rest // 100}.{rest % 100}"
    return ""


def _gpu(device_id: int) -> tuple[str, str]:
    """Name and compute capability of CUDA device ``device_id`` via the driver API."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "", ""
    dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    name = ctypes.create_string_buffer(256)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(dev), device_id) != 0:
        return "", ""
    if cuda.cuDeviceGetName(name, 256, dev) != 0:
        return "", ""
    cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # COMPUTE_CAPABILITY_MAJOR
    cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)  # COMPUTE_CAPABILITY_MINOR
    return name.value.decode(errors="replace"), f"{major.value}.{minor.value}"


def detect_environment(device_id: int = 0) -> TensorRTEnvironment:
    """The running TensorRT/ONNX Runtime versions and GPU (empty strings where absent)."""
    import onnxruntime as ort

    gpu, cc = _gpu(device_id)
    return TensorRTEnvironment(_tensorrt_version(), ort.__version__, gpu, cc)


def engine_dirs(cfg: TensorRTConfig, model_sha256: str, profile: Profile, precision: str,
                env: TensorRTEnvironment) -> tuple[str | None, str | None]:
    """Engine and timing cache directories (created), or (None, None) without a cache dir."""
    if not cfg.cache_dir:
        return None, None
    root = Path(cfg.cache_dir)
    engine = root / cache_key(model_sha256, profile, precision, env)
    timing = root / timing_key(env)
    for d in (engine, timing):
        d.mkdir(parents=True, exist_ok=True)  # onnxruntime creates only the last level
    return str(engine), str(timing)
