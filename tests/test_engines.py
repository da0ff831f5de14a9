"""Engines: parity with ONNX Runtime fp32, selection, fallbacks, the CPU budget, gRPC."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from conftest import skimage_photo
from PIL import Image
from pixels import MAX_DIFFERING, MAX_DIFFERING_BF16, assert_pixels_close
from server_fixtures import decode, encode, photo, start_server

from robust_style.server.client import StyleClient
from robust_style.server.engines import (
    CpuBudget,
    EngineConfig,
    EngineSelector,
    OnnxRuntimeEngine,
    OpenVINOEngine,
    ProviderConfig,
    openvino_status,
    psnr,
    warmup_image,
)
from robust_style.server.registry import load_style_file

SCREAM = Path(str(resources.files("robust_style") / "models" / "the-scream.onnx"))
CPU = [("CPUExecutionProvider", {})]
OV = openvino_status()
needs_ov = pytest.mark.skipif(not OV.available, reason=f"OpenVINO unusable: {OV.reason}")
needs_bf16 = pytest.mark.skipif(not OV.bf16, reason="this CPU has no bf16 arithmetic "
                                "(OpenVINO OPTIMIZATION_CAPABILITIES lacks BF16)")
#: (N, H, W) of the parity checks: odd sizes, a batch, a large square.
SHAPES = [(1, 37, 53), (2, 256, 320), (1, 512, 512)]
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]


def batch_of(n: int, h: int, w: int, first: int = 0) -> np.ndarray:
    """``n`` different real photos resized to ``h``x``w``."""
    return np.stack([np.asarray(Image.fromarray(skimage_photo(PHOTOS[(first + i) % len(PHOTOS)]))
                                .resize((w, h), Image.Resampling.BILINEAR)) for i in range(n)])


@pytest.fixture(scope="module")
def model() -> bytes:
    return SCREAM.read_bytes()


@pytest.fixture(scope="module")
def reference(model: bytes) -> OnnxRuntimeEngine:
    return OnnxRuntimeEngine(model, ProviderConfig(), CPU)


@needs_ov
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_openvino_fp32_matches_onnxruntime_within_one_lsb(model: bytes,
                                                          reference: OnnxRuntimeEngine,
                                                          shape: tuple[int, int, int]) -> None:
    engine = OpenVINOEngine(model, "fp32")
    assert engine.precision == "fp32" and engine.name == "openvino"
    x = batch_of(*shape)
    y, ref = engine.run(x), reference.run(x)
    assert y.shape == ref.shape == (*shape, 3) and y.dtype == np.uint8
    close = np.abs(y.astype(np.int16) - ref.astype(np.int16)) <= 1
    assert close.mean() >= 0.999, f"only {close.mean():.5f} of the pixels within 1 LSB"



@needs_ov
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_one_image_agrees_alone_and_in_a_batch(model: bytes, precision: str) -> None:
    """The batch guarantee (tests/pixels.py) at each precision. fp32 is what an AVX2-only
    CPU (no bf16) runs, forced here on any CPU; bf16 falls back to fp32 where unsupported."""
    engine = OpenVINOEngine(model, precision)
    x = batch_of(2, 70, 141)
    x[1] = x[0][::-1]
    both, alone = engine.run(x), engine.run(x[:1])
    assert_pixels_close(both[0], alone[0], f"openvino {engine.precision}: batch of 2 vs alone",
                        MAX_DIFFERING_BF16 if engine.precision == "bf16" else MAX_DIFFERING)


@needs_ov
@needs_bf16
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_openvino_bf16_is_within_45_db_of_onnxruntime_fp32(model: bytes,
                                                           reference: OnnxRuntimeEngine,
                                                           shape: tuple[int, int, int]) -> None:
    engine = OpenVINOEngine(model, "bf16")
    assert engine.precision == "bf16"
    x = batch_of(*shape, first=1)
    y, ref = engine.run(x), reference.run(x)
    assert y.shape == ref.shape
    assert psnr(y, ref) >= 45.0
    assert not np.array_equal(y, ref), "bf16 that equals fp32 exactly did not run in bf16"


def test_onnxruntime_engine_runs_any_batch_and_size(model: bytes, reference: OnnxRuntimeEngine
                                                    ) -> None:
    engine = EngineSelector(EngineConfig(engine="onnxruntime")).load(model, 32).engine
    assert (engine.name, engine.precision, engine.devices) == ("onnxruntime", "fp32",
                                                               ("CPUExecutionProvider",))
    for shape in SHAPES[:2]:
        x = batch_of(*shape)
        assert np.array_equal(engine.run(x), reference.run(x))


def test_auto_picks_openvino_with_bf16_where_the_cpu_has_it(model: bytes) -> None:
    selector = EngineSelector(EngineConfig())
    loaded = selector.load(model, 64)
    if selector.on_gpu:
        pytest.skip("a GPU provider works here: auto picks ONNX Runtime (not this test's case)")
    want = ("openvino", "bf16" if OV.bf16 else "fp32") if OV.available else ("onnxruntime",
                                                                             "fp32")
    assert (loaded.engine.name, loaded.engine.precision) == want
    assert loaded.gate_psnr_db >= 45.0
    if OV.available:
        assert "accuracy gate" in loaded.note and loaded.engine.devices[0].startswith("CPU")
    fp32 = EngineSelector(EngineConfig(precision="fp32")).load(model, 64)
    assert fp32.engine.precision == "fp32"


@needs_ov
@needs_bf16
def test_bf16_failing_the_gate_falls_back_to_fp32_then_onnxruntime(
        model: bytes, caplog: pytest.LogCaptureFixture) -> None:
    # The gate set just above what bf16 reaches: bf16 is refused, OpenVINO fp32 passes.
    bf16 = EngineSelector(EngineConfig(precision="bf16", gate_psnr_db=0)).load(model, 64)
    assert bf16.engine.precision == "bf16"
    gate = bf16.gate_psnr_db + 0.5
    loaded = EngineSelector(EngineConfig(gate_psnr_db=gate)).load(model, 64)
    assert (loaded.engine.name, loaded.engine.precision) == ("openvino", "fp32")
    assert loaded.gate_psnr_db >= gate
    assert f"openvino bf16 failed the accuracy gate ({bf16.gate_psnr_db:.1f} dB" in loaded.note
    assert any("failed the accuracy gate" in r.getMessage() for r in caplog.records)
    # Out of reach for any reduced arithmetic: only the fp32 reference itself passes.
    strict = load_style_file(SCREAM, EngineConfig(gate_psnr_db=1000.0), warmup_side=64)
    assert (strict.engine_name, strict.precision) == ("onnxruntime", "fp32")
    assert strict.providers == ("CPUExecutionProvider",)
    assert "openvino bf16 failed" in strict.engine_note
    assert "openvino fp32 failed" in strict.engine_note


def test_explicit_precision_requests_are_honoured_or_noted(model: bytes) -> None:
    ort_bf16 = EngineSelector(EngineConfig(engine="onnxruntime", precision="bf16")).load(model, 32)
    assert ort_bf16.engine.precision == "fp32" and "no bf16" in ort_bf16.note
    if OV.available and not OV.bf16:
        ov_bf16 = EngineSelector(EngineConfig(engine="openvino", precision="bf16")).load(model, 32)
        assert ov_bf16.engine.precision == "fp32" and "no bf16 arithmetic" in ov_bf16.note


@pytest.fixture()
def no_openvino(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import openvino`` really fails."""
    fake = tmp_path / "fake" / "openvino"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("openvino hidden by the test")\n')
    src = Path(__file__).resolve().parents[1] / "src"
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), str(src)])}


def test_without_openvino_auto_falls_back_to_onnxruntime(no_openvino: dict[str, str]) -> None:
    code = textwrap.dedent(f"""
        from robust_style.server.registry import load_style_file
        m = load_style_file({str(SCREAM)!r}, warmup_side=32)
        print(m.engine_name, m.precision, "|", m.engine_note)
    """)
    out = subprocess.run([sys.executable, "-c", code], env=no_openvino, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("onnxruntime fp32 |"), out.stdout
    assert "OpenVINO unavailable (ImportError: openvino hidden by the test)" in out.stdout


def test_serve_engine_openvino_without_openvino_is_one_line(no_openvino: dict[str, str]
                                                            ) -> None:
    out = subprocess.run([sys.executable, "-m", "robust_style", "serve", "--engine", "openvino",
                          "--port", "0", "--metrics-port", "-1", "--http-port", "-1"], env=no_openvino,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("robust-style: error")]
    assert len(errors) == 1 and "OpenVINO is not usable here" in errors[0], out.stderr
    assert "Traceback" not in out.stderr


def test_cpu_budget_keeps_concurrent_runs_within_the_cores() -> None:
    budget = CpuBudget(2)
    assert budget.units(0) == 2 and budget.units(1) == 1 and budget.units(8) == 2
    peak, lock, order = [0], threading.Lock(), []

    def run(threads: int, tag: str) -> None:
        with budget.hold(threads):
            with lock:
                peak[0] = max(peak[0], budget.in_use())
                order.append(tag)
            time.sleep(0.05)

    workers = [threading.Thread(target=run, args=(t, f"{t}:{i}"))
               for i, t in enumerate([2, 1, 1, 0, 1, 2])]
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    assert len(order) == 6 and peak[0] == 2 and budget.in_use() == 0
    # a full-core run excludes every other run while it holds the cores
    started = threading.Event()

    def one_thread_run() -> None:
        with budget.hold(1):
            started.set()

    with budget.hold(2):
        t = threading.Thread(target=one_thread_run)
        t.start()
        assert not started.wait(0.2), "a 1-thread run started while all cores were held"
    assert started.wait(5), "the waiting run must start once the cores are free"
    t.join(5)


def test_warmup_image_is_a_fixed_photo() -> None:
    a, b = warmup_image(37), warmup_image(37)
    assert a.shape == (1, 37, 37, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert a.std() > 20, "a photo, not a flat image"


# -- a real gRPC round trip on each engine ---------------------------------------------------
ENGINE_CONFIGS = [
    pytest.param(EngineConfig(engine="onnxruntime"), "onnxruntime", "fp32", id="onnxruntime"),
    pytest.param(EngineConfig(engine="openvino", precision="fp32"), "openvino", "fp32",
                 id="openvino-fp32", marks=needs_ov),
    pytest.param(EngineConfig(engine="openvino", precision="bf16"), "openvino", "bf16",
                 id="openvino-bf16", marks=[needs_ov, needs_bf16]),
]


@pytest.mark.parametrize(("config", "engine", "precision"), ENGINE_CONFIGS)
def test_grpc_round_trip_on_each_engine(tmp_path: Path, reference: OnnxRuntimeEngine,
                                        config: EngineConfig, engine: str, precision: str
                                        ) -> None:
    tc = pytest.importorskip("tritonclient.grpc")
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(SCREAM, models / SCREAM.name)
    server = start_server(models, engine=config)
    try:
        with StyleClient(server.address) as client:
            (info,) = client.list_styles()
            assert (info.engine, info.precision) == (engine, precision)
            assert len(info.sha256) == 64 and info.version
            content = photo("chelsea", 75)  # odd size
            out = decode(client.stylize(encode(content), "the-scream").image)
        ref = reference.run(content[None])[0]
        floor = 45.0 if precision == "bf16" else 60.0
        assert out.shape == ref.shape and psnr(out, ref) >= floor
        kserve = tc.InferenceServerClient(server.address)
        x = batch_of(2, 41, 67)  # a batch of odd-sized photos, raw
        inp = tc.InferInput("image", list(x.shape), "UINT8")
        inp.set_data_from_numpy(x)
        y = kserve.infer("the-scream", [inp]).as_numpy("stylized")
        assert y.shape == x.shape and psnr(y, reference.run(x)) >= floor
        platform = kserve.get_model_metadata("the-scream").platform
        assert platform == {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino"}[engine]
        from prometheus_client.parser import text_string_to_metric_families

        info = {tuple(sorted(s.labels.items())): s.value
                for f in text_string_to_metric_families(server.metrics.render())
                if f.name == "robust_style_engine_info" for s in f.samples}
        assert info == {(("engine", engine), ("precision", precision),
                         ("style", "the-scream")): 1.0}
    finally:
        server.stop(0)
