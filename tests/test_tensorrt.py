"""TensorRT profiles, provider options, engine cache keys and routing, without a GPU.

The profile boxes are read back from the provider-option *strings* (parsed the way ONNX
Runtime's ``ParseProfileShapes`` does), so the tests check what TensorRT would be given.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from robust_style.server.engines.tensorrt import (
    Profile,
    TensorRTConfig,
    TensorRTEnvironment,
    cache_key,
    detect_environment,
    engine_dirs,
    parse_shapes,
    plan_profiles,
    provider_options,
)
from robust_style.server.engines.tensorrt_router import ProfileRouter, create_router, route

ENV = TensorRTEnvironment("10.13.0", "1.31.1", "NVIDIA L4", "8.9")
LIMITS = [  # (max_pixels, max_batch, trt_max_pixels, max_aspect)
    (40_000_000, 8, 2048 * 2048, 2.0),
    (40_000_000, 1, 4096 * 2160, 2.4),
    (1_000_000, 8, 2048 * 2048, 2.0),
    (4_000_000, 4, 1 << 30, 1.0),
    (64, 8, 64, 1.0),
]


def _boxes(cfg: TensorRTConfig) -> list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) of every profile, from the provider options ONNX Runtime receives."""
    out = []
    for p in plan_profiles(cfg):
        opts = provider_options(p, cfg, None, None)
        shapes = [parse_shapes(opts[f"trt_profile_{k}_shapes"]) for k in ("min", "opt", "max")]
        assert all(list(s) == ["image"] and len(s["image"]) == 1 for s in shapes), shapes
        mn, opt, mx = (s["image"][0] for s in shapes)
        assert len(mn) == 4 and mn[3] == opt[3] == mx[3] == 3
        assert all(a <= b <= c for a, b, c in zip(mn, opt, mx, strict=True))
        out.append((mn, opt, mx))
    return out


def _sizes(max_pixels: int, rng: random.Random) -> list[tuple[int, int]]:
    """Extremes, squares, odd sizes, common photo sizes and random ones, all accepted."""
    top = max_pixels // 8
    root = math.isqrt(max_pixels)
    sizes = {(8, 8), (8, top), (top, 8), (root, root), (root - 1, root + 1), (9, 9),
             (37, 53), (511, 513), (720, 1280), (1080, 1920), (2160, 3840), (3024, 4032)}
    for _ in range(400):
        h = int(math.exp(rng.uniform(math.log(8), math.log(top))))
        w = rng.randint(8, max(8, max_pixels // h))
        sizes.add((h, w))
    return sorted((h, w) for h, w in sizes if min(h, w) >= 8 and h * w <= max_pixels)


@pytest.mark.parametrize("max_pixels,max_batch,trt_pixels,aspect", LIMITS)
def test_profiles_cover_every_accepted_size_within_the_planned_band(
        max_pixels: int, max_batch: int, trt_pixels: int, aspect: float) -> None:
    """Every accepted size is either inside a profile's box or routed to the fallback.

    Inside the band TensorRT is planned for (at most ``trt_max_pixels`` pixels and an
    aspect ratio up to ``max_aspect``, capped by the server's ``max_pixels``) every size and
    every batch up to ``max_batch`` must be covered by the boxes in the provider options;
    outside it the router must pick a box that really holds the shape, or the fallback.
    """
    cfg = TensorRTConfig(max_pixels=max_pixels, max_batch=max_batch, trt_max_pixels=trt_pixels,
                         max_aspect=aspect)
    boxes = _boxes(cfg)
    profiles = plan_profiles(cfg)
    assert min(b[0][0] for b in boxes) == 1 and min(b[0][1] for b in boxes) == 8
    assert min(b[0][2] for b in boxes) == 8
    assert max(b[2][0] for b in boxes) == max_batch
    band = min(trt_pixels, max_pixels)
    covered = outside = 0
    for h, w in _sizes(max_pixels, random.Random(max_pixels + max_batch)):
        in_band = h * w <= band and max(h, w) <= aspect * min(h, w)
        holds = [b for b in boxes if b[0][1] <= h <= b[2][1] and b[0][2] <= w <= b[2][2]]
        if in_band:
            assert holds, f"{h}x{w} is in the planned band but no profile holds it: {boxes}"
        for n in sorted({1, 2, max_batch, 64}):
            r = route(profiles, (n, h, w))
            if r.profile is None:
                assert not holds and not in_band
                continue
            mn, _, mx = boxes[r.profile]
            assert mn[1] <= h <= mx[1] and mn[2] <= w <= mx[2]
            assert 1 <= r.chunk <= mx[0] and (r.chunk == n or r.chunk == mx[0])
            if n <= max_batch and in_band:
                # a batch the batcher can form runs whole when some box takes it whole
                assert r.chunk == n or not any(b[2][0] >= n and b in holds for b in boxes)
        covered += bool(holds)
        outside += not holds
    assert covered > (10 if max_pixels > 10_000 else 0)
    if max_pixels > band * 4:
        assert outside > 0  # the band is really narrower than what the server accepts


def test_default_plan_memory_and_opt() -> None:
    """The defaults: opt 1x720x1280 in the single profile; a few GB of fp16 activations."""
    profiles = plan_profiles(TensorRTConfig())
    names = [p.name for p in profiles]
    assert names == ["batch", "single"]
    single = profiles[1]
    assert single.opt == (1, 720, 1280) and single.max[0] == 1
    assert single.max[1] == single.max[2] == math.ceil(math.sqrt(2 * 2048 * 2048))
    total = sum(p.activation_bytes("fp16") for p in profiles)
    assert 2e9 < total < 4e9
    assert all(p.activation_bytes("fp32") == 2 * p.activation_bytes("fp16") for p in profiles)
    # the typical size is tuned for, small batches go to the batch engine
    assert route(profiles, (1, 720, 1280)) == route(profiles, (1, 1080, 1920))
    assert profiles[route(profiles, (8, 256, 256)).profile].name == "batch"


def test_opt_is_clamped_into_the_box() -> None:
    cfg = TensorRTConfig(max_pixels=10_000, opt=(1, 4000, 6000))
    for p in plan_profiles(cfg):
        assert all(a <= b <= c for a, b, c in zip(p.min, p.opt, p.max, strict=True))
    with pytest.raises(ValueError, match="min <= opt <= max"):
        Profile("bad", (1, 8, 8), (1, 4, 4), (1, 16, 16))


def test_parse_shapes_reads_several_profiles() -> None:
    assert parse_shapes("image:1x8x8x3,mask:1x2,image:2x16x16x3") == {
        "image": [(1, 8, 8, 3), (2, 16, 16, 3)], "mask": [(1, 2)]}
    with pytest.raises(ValueError):
        parse_shapes("1x8x8x3")


def test_provider_options_cache_and_precision(tmp_path) -> None:
    cfg = TensorRTConfig(cache_dir=str(tmp_path / "trt"), device_id=1, fp16=True)
    p = plan_profiles(cfg)[-1]
    engine, timing = engine_dirs(cfg, "ab" * 32, p, "fp16", ENV)
    assert engine and timing
    opts = provider_options(p, cfg, engine, timing)
    assert opts["device_id"] == 1 and opts["trt_fp16_enable"] is True
    assert opts["trt_engine_cache_enable"] and opts["trt_engine_cache_path"] == engine
    assert opts["trt_timing_cache_enable"] and opts["trt_timing_cache_path"] == timing
    assert (tmp_path / "trt").is_dir() and all(
        d.is_dir() for d in (tmp_path / "trt").iterdir())
    assert provider_options(p, cfg, None, None, fp16=False)["trt_fp16_enable"] is False
    assert "trt_engine_cache_path" not in provider_options(p, cfg, None, None)
    assert engine_dirs(dataclasses.replace(cfg, cache_dir=""), "ab" * 32, p, "fp16", ENV) == (
        None, None)


def test_cache_key_changes_with_model_profile_precision_and_versions() -> None:
    profiles = plan_profiles(TensorRTConfig())
    sha = "0123456789abcdef" * 4
    base = cache_key(sha, profiles[1], "fp16", ENV)
    assert base == cache_key(sha, profiles[1], "fp16", ENV)  # stable across restarts
    assert base.startswith(sha[:12])
    variants = {
        "model": cache_key("f" + sha[1:], profiles[1], "fp16", ENV),
        "profile": cache_key(sha, profiles[0], "fp16", ENV),
        "opt": cache_key(sha, dataclasses.replace(profiles[1], opt=(1, 512, 512)), "fp16", ENV),
        "precision": cache_key(sha, profiles[1], "fp32", ENV),
        "tensorrt": cache_key(sha, profiles[1], "fp16",
                              dataclasses.replace(ENV, tensorrt_version="10.14.1")),
        "onnxruntime": cache_key(sha, profiles[1], "fp16",
                                 dataclasses.replace(ENV, onnxruntime_version="1.32.0")),
        "gpu": cache_key(sha, profiles[1], "fp16", dataclasses.replace(ENV, gpu_name="H100")),
    }
    assert base not in variants.values()
    assert len(set(variants.values())) == len(variants)


def test_detect_environment_without_a_gpu() -> None:
    env = detect_environment()
    assert env.onnxruntime_version == ort.__version__
    if not env.gpu_name:
        assert not env.available


def _save_model(path, invert: bool) -> bytes:
    """A real uint8 NHWC model: identity, or 255 - x (to tell the two sessions apart)."""
    x = helper.make_tensor_value_info("image", TensorProto.UINT8, ["n", "h", "w", 3])
    y = helper.make_tensor_value_info("stylized", TensorProto.UINT8, ["n", "h", "w", 3])
    op = "BitwiseNot" if invert else "Identity"  # ~x == 255 - x on uint8
    graph = helper.make_graph([helper.make_node(op, ["image"], ["stylized"])], op, [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.save(model, path)
    return path.read_bytes()


def _model(path, invert: bool) -> ort.InferenceSession:
    return ort.InferenceSession(_save_model(path, invert), providers=["CPUExecutionProvider"])


class _Counting:
    """Counts the shapes a real session is asked to run (instrumentation, not a stand-in)."""

    def __init__(self, sess: ort.InferenceSession) -> None:
        self.sess, self.shapes = sess, []

    def run(self, names, feed):
        self.shapes.append(next(iter(feed.values())).shape[:3])
        return self.sess.run(names, feed)


def test_router_sends_shapes_outside_every_profile_to_the_fallback(tmp_path, caplog) -> None:
    """Routing under test: real ONNX Runtime CPU sessions stand in for the TensorRT ones
    (identity model) and the CUDA fallback (255 - x model), so the output shows which ran."""
    profiles = (Profile("batch", (1, 8, 8), (2, 16, 16), (2, 16, 16)),
                Profile("single", (1, 8, 8), (1, 32, 40), (1, 40, 40)))
    trt = [_Counting(_model(tmp_path / f"p{i}.onnx", invert=False)) for i in range(2)]
    fallback = _Counting(_model(tmp_path / "fb.onnx", invert=True))
    seen = []
    router = ProfileRouter(profiles, trt, fallback, "image", "stylized", on_fallback=seen.append)
    assert [name for name, _ in router.warm_up()] == ["batch", "single", "fallback"]
    assert trt[0].shapes == [(2, 16, 16)] and trt[1].shapes == [(1, 32, 40)]
    rng = np.random.default_rng(0)

    x = rng.integers(0, 256, (1, 41, 20, 3), dtype=np.uint8)  # taller than every box
    with caplog.at_level(logging.DEBUG, logger="robust_style.server.engines.tensorrt"):
        np.testing.assert_array_equal(router.run(x), 255 - x)
        np.testing.assert_array_equal(router.run(x), 255 - x)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "41x20" in warnings[0].getMessage()
    assert router.fallbacks == 2 and seen == [(1, 41, 20), (1, 41, 20)]

    y = rng.integers(0, 256, (5, 12, 9, 3), dtype=np.uint8)  # batch 5 > 2: chunks of 2
    np.testing.assert_array_equal(router.run(y), y)
    assert trt[0].shapes[1:] == [(2, 12, 9), (2, 12, 9), (1, 12, 9)]
    z = rng.integers(0, 256, (1, 33, 37, 3), dtype=np.uint8)  # only the single box
    np.testing.assert_array_equal(router.run(z), z)
    assert trt[1].shapes[-1] == (1, 33, 37) and router.fallbacks == 2
    w = rng.integers(0, 256, (3, 33, 37, 3), dtype=np.uint8)  # single box, N_max 1
    np.testing.assert_array_equal(router.run(w), w)
    assert trt[1].shapes[-3:] == [(1, 33, 37)] * 3 and router.fallbacks == 2


def test_create_router_refuses_when_tensorrt_is_not_really_used(tmp_path) -> None:
    """Without a GPU the TensorRT EP falls back to the CPU inside ONNX Runtime: the router
    must notice and raise, so the engine layer moves on to the CUDA or CPU providers."""
    env = detect_environment()
    if env.available:
        pytest.skip("a GPU with TensorRT is present: scripts/gpu_check.sh covers this path")
    cfg = TensorRTConfig(max_batch=2, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="TensorRT is not usable"):
        create_router(_save_model(tmp_path / "id.onnx", invert=False), "ab" * 32, cfg,
                      ort.SessionOptions(), fp16=True, input_name="image",
                      output_name="stylized")


def test_serve_builds_the_tensorrt_config_from_its_limits(tmp_path) -> None:
    from robust_style.cli import build_parser
    from robust_style.cli.cmd_serve import _config

    args = build_parser().parse_args(
        ["serve", "--models", str(tmp_path), "--max-pixels", "9000000", "--max-batch", "4",
         "--trt-opt", "1080x1920", "--trt-max-pixels", "3000000", "--no-trt-fp16",
         "--trt-cache-dir", str(tmp_path / "c")])
    providers = _config(args, tmp_path).registry.engine.providers
    trt = providers.trt_config()
    assert (trt.max_pixels, trt.max_batch, trt.opt, trt.trt_max_pixels) == (
        9_000_000, 4, (1, 1080, 1920), 3_000_000)
    assert trt.fp16 is False and trt.cache_dir == str(tmp_path / "c")
    batch, single = plan_profiles(trt)
    assert batch.max[0] == 4 and single.opt == (1, 1080, 1920)
    auto = _config(build_parser().parse_args(["serve", "--models", str(tmp_path)]), tmp_path)
    assert auto.registry.engine.providers.trt_config().max_batch == 8  # --max-batch 0: GPU's 8


def test_registry_counts_tensorrt_fallbacks_per_style(tmp_path) -> None:
    """The hook the TensorRT router calls for a size beyond every profile reaches the
    style's ``robust_style_trt_fallback_total`` (the router itself needs a GPU; its
    fallback routing is tested above)."""
    from robust_style.server.engines import EngineConfig, ProviderConfig
    from robust_style.server.metrics import Metrics
    from robust_style.server.registry import ModelRegistry, RegistryConfig

    (tmp_path / "m").mkdir()
    _save_model(tmp_path / "m" / "ident.onnx", invert=False)
    cfg = RegistryConfig(models_dir=tmp_path / "m", poll_seconds=0, warmup_side=16,
                         engine=EngineConfig(engine="onnxruntime",
                                             providers=ProviderConfig(device="cpu")))
    metrics = Metrics()
    registry = ModelRegistry(cfg, metrics)
    try:
        registry.scan()
        model, _ = registry.get("ident")
        inner = model.engine.inner  # the budget's wrapper hands the listener to its engine
        inner.on_fallback((1, 5000, 9))
        inner.on_fallback((1, 5000, 9))
        assert metrics.trt_fallbacks.values[(("style", "ident"),)] == 2
        assert 'robust_style_trt_fallback_total{style="ident"} 2' in metrics.render()
    finally:
        registry.stop()


def test_onnxruntime_engine_survives_tensorrt_failing_to_build(tmp_path) -> None:
    """Asked for TensorRT where it cannot run, the engine logs, drops TensorRT and serves
    on what remains (here the CPU), with correct pixels: never an error at load."""
    from robust_style.server.engines import OnnxRuntimeEngine, ProviderConfig

    if detect_environment().available:
        pytest.skip("a GPU with TensorRT is present: scripts/gpu_check.sh covers this path")
    cfg = ProviderConfig(device="tensorrt", trt_cache_dir=str(tmp_path / "c"))
    engine = OnnxRuntimeEngine(_save_model(tmp_path / "inv.onnx", invert=True), cfg,
                               [*cfg.candidates(), ("CPUExecutionProvider", {})])
    assert engine.router is None and engine.devices[0] == "CPUExecutionProvider"
    assert engine.precision == "fp32" and engine.gate_outputs(np.zeros((1, 8, 8, 3))) == []
    x = np.random.default_rng(1).integers(0, 256, (2, 9, 11, 3), dtype=np.uint8)
    np.testing.assert_array_equal(engine.run(x), 255 - x)
