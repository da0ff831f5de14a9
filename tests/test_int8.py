"""int8 behind the accuracy gate (issue 23): NNCF-quantised OpenVINO is tried first and
kept only when it passes the gate and is faster; ``engine_note`` says why either way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from server_fixtures import export_tiny, start_server

from robust_style.server.client import StyleClient
from robust_style.server.engines import EngineConfig
from robust_style.server.engines.onnxruntime_engine import OnnxRuntimeEngine, ProviderConfig
from robust_style.server.engines.openvino_engine import openvino_status
from robust_style.server.engines.quantize import nncf_status
from robust_style.server.engines.select import EngineSelector, warmup_image

pytestmark = pytest.mark.skipif(bool(nncf_status()) or not openvino_status().available,
                                reason="needs NNCF and OpenVINO (the dev extra)")


def quantises_badly(src: Path, dst: Path, factor: float = 1e4) -> Path:
    """The same function, with one activation channel ``factor`` times the others.

    The last instance norm's scale and shift of channel 0 are multiplied by ``factor`` and
    the following convolution's weights from that channel divided by it: in float the
    output is unchanged (ReLU commutes with a positive scale), but a per-tensor int8
    activation scale now spans channel 0's range and rounds every other channel to 0.
    """
    model = onnx.load(str(src))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    norm = [n for n in g.node if n.op_type == "InstanceNormalization"][-1]
    convs = [n for n in g.node if n.op_type == "Conv"]
    last = convs[-1]
    for pos in (1, 2):  # scale, shift: fresh copies (equal initializers may be shared)
        arr = numpy_helper.to_array(inits[norm.input[pos]]).copy()
        arr[0] *= factor
        name = f"{norm.input[pos]}_rs_badq"
        g.initializer.append(numpy_helper.from_array(arr.astype(np.float32), name))
        norm.input[pos] = name
    w = numpy_helper.to_array(inits[last.input[1]]).copy()
    w[:, 0] /= factor
    name = f"{last.input[1]}_rs_badq"
    g.initializer.append(numpy_helper.from_array(w, name))
    last.input[1] = name
    onnx.save(model, str(dst))
    return dst


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    return OnnxRuntimeEngine(path.read_bytes(), ProviderConfig(), [("CPUExecutionProvider", {})]
                             ).run(x)


def test_a_model_that_quantises_badly_falls_back_and_says_so(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    good = export_tiny(tmp_path / "tiny.onnx", "badq", seed=2)
    bad = quantises_badly(good, models / "badq.onnx")
    x = warmup_image(48)
    # the same function in float (within rounding): only quantisation is hurt
    assert np.abs(_run(bad, x).astype(int) - _run(good, x).astype(int)).max() <= 2
    server = start_server(models)  # default engine config: auto, int8 tried first
    try:
        with StyleClient(server.address) as client:
            info = {s.name: s for s in client.list_styles()}["badq"]
        assert info.ready and info.precision != "int8"
        assert "openvino int8 failed the accuracy gate" in info.engine_note, info.engine_note
    finally:
        server.stop(0)


def test_int8_that_passes_is_kept_only_if_faster_with_the_figures(tmp_path: Path) -> None:
    model = export_tiny(tmp_path / "tiny.onnx", "tiny", seed=0).read_bytes()
    loaded = EngineSelector(EngineConfig(gate_psnr_db=0.0)).load(model, warmup_side=64)
    note = loaded.note
    assert "int8 passed the gate" in note, note
    kept = loaded.engine.precision == "int8"
    assert ("ran the warm-up image in" in note) == kept, note
    assert ("was not faster" in note) == (not kept), note
