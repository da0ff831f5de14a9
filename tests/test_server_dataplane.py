"""Every front door goes through the one data plane and gets the same pixels.

The own API (``Stylize``), KServe (``ModelInfer`` with a raw image tensor) and local
``stylize --model`` get the same photo for the same style: their pixels must be equal, and
each request must have been answered by :class:`~robust_style.server.dataplane.DataPlane`
(its ``served`` counter per door and its post-processing step), so a door that ran the
model or post-processed on its own fails here.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from server_fixtures import decode, encode, photo

from robust_style.server import dataplane
from robust_style.server.app import ServerConfig, StyleServer
from robust_style.server.batching import BatchConfig
from robust_style.server.client import StyleClient
from robust_style.server.engines import EngineConfig
from robust_style.server.local import LocalStylizer
from robust_style.server.protos.inference import grpc_service_pb2 as kpb
from robust_style.server.protos.inference import grpc_service_pb2_grpc as kgrpc
from robust_style.server.registry import RegistryConfig


def test_three_doors_one_data_plane_same_pixels(models_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    finished: list[str] = []
    real_finish = dataplane.images.finish

    def spy(content: np.ndarray, stylized: np.ndarray, **kw: object) -> np.ndarray:
        finished.append("finish")
        return real_finish(content, stylized, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(dataplane.images, "finish", spy)
    x = photo("chelsea", 64)
    png = encode(x)
    engine = EngineConfig(engine="onnxruntime", precision="fp32")
    reg = RegistryConfig(models_dir=models_dir, engine=engine, batch=BatchConfig(max_batch=1),
                         poll_seconds=0.0, warmup_side=32)
    server = StyleServer(ServerConfig(registry=reg, port=0, metrics_port=None)).start()
    try:
        assert server.wait_ready(60)
        with StyleClient(server.address) as client:
            own = decode(client.stylize(png, "tiny").image)
        assert server.plane.served["style"] == 1 and len(finished) == 1
        stub = kgrpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.address))
        req = kpb.ModelInferRequest(model_name="tiny", raw_input_contents=[x[None].tobytes()])
        req.inputs.add(name="image", datatype="UINT8", shape=[1, *x.shape])
        resp = stub.ModelInfer(req, timeout=60)
        kserve = np.frombuffer(resp.raw_output_contents[0], np.uint8).reshape(x.shape)
        assert server.plane.served["kserve"] == 1
        model, _ = server.plane.lookup("tiny")
        assert model.stats.snapshot().inference_count == 2  # both APIs, one statistics
    finally:
        server.stop(0)
    with LocalStylizer(models_dir / "tiny.onnx", engine, warmup_side=32) as local:
        here = decode(local.stylize(png, "tiny").image)
        assert local.plane.served["local"] == 1 and len(finished) == 2
        frames = list(local.stylize_frames([x], "tiny"))
        assert local.plane.served["local"] == 2 and len(finished) == 3
    assert own.shape == kserve.shape == here.shape == x.shape
    np.testing.assert_array_equal(own, kserve)
    np.testing.assert_array_equal(here, kserve)
    np.testing.assert_array_equal(frames[0], kserve)
    assert np.abs(own.astype(int) - x).mean() > 10  # really stylised


def test_local_frames_run_ahead_of_the_caller_in_order(models_dir: Path) -> None:
    """``stylize --model clip.mp4``'s frames: the engine runs up to ``STREAM_WINDOW``
    frames ahead of the one handed back (so the caller's encode and decode overlap with
    inference), and the frames come back in order, each as the single-image door gives it."""
    frames = [photo(name, 48 + 8 * i) for i, name in
              enumerate(("chelsea", "astronaut", "coffee", "camera", "rocket", "chelsea"))]
    engine = EngineConfig(engine="onnxruntime", precision="fp32")
    read: list[int] = []

    def source() -> object:
        for i, f in enumerate(frames):
            read.append(i)
            yield f

    with LocalStylizer(models_dir / "tiny.onnx", engine, warmup_side=32) as local:
        singles = [decode(local.stylize(encode(f), "tiny").image) for f in frames]
        outs = []
        for out in local.stylize_frames(source(), "tiny"):  # type: ignore[arg-type]
            if not outs:
                assert len(read) == dataplane.STREAM_WINDOW  # read ahead, not all at once
            outs.append(out)
    assert len(outs) == len(frames)
    for out, single in zip(outs, singles, strict=True):
        np.testing.assert_array_equal(out, single)
