"""Triton's own client (tritonclient) against the server: model config, statistics,
explicit model control (load, unload, repository index) and ModelStreamInfer.

A real server on 127.0.0.1 (port 0) with real exported models; every answer is parsed by
tritonclient's own protobuf definitions, as Triton users' scripts would.
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from pathlib import Path

import grpc
import numpy as np
import pytest
from server_fixtures import photo, start_server

from robust_style.server.app import StyleServer
from robust_style.server.kserve.service import EXTENSIONS
from robust_style.server.protos.inference import grpc_service_pb2 as kpb
from robust_style.server.protos.inference import grpc_service_pb2_grpc as kpb_grpc

tc = pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import model_config_pb2 as mc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402


def _client(server: StyleServer):
    return tc.InferenceServerClient(server.address)


def _image(side: int = 48, n: int = 1):
    arr = np.stack([photo("astronaut", side)] * n)
    inp = tc.InferInput("image", list(arr.shape), "UINT8")
    inp.set_data_from_numpy(arr)
    return inp


def _status(exc: InferenceServerException) -> str:
    return str(exc.status())


def test_server_metadata_lists_exactly_the_implemented_extensions(server: StyleServer) -> None:
    meta = _client(server).get_server_metadata()
    assert sorted(meta.extensions) == sorted(EXTENSIONS) == \
        ["model_configuration", "model_repository", "statistics"]


def test_model_config_is_the_export_config_with_what_the_server_knows(
        server: StyleServer, models_dir: Path) -> None:
    from google.protobuf import text_format

    from robust_style.export.triton import triton_config

    client = _client(server)
    cfg = client.get_model_config("tiny").config
    sha = hashlib.sha256((models_dir / "tiny.onnx").read_bytes()).hexdigest()
    engine = server.registry.get("tiny")[0].engine_name  # auto: OpenVINO or ONNX Runtime
    assert cfg.name == "tiny" and cfg.backend == engine
    assert cfg.platform == client.get_model_metadata("tiny").platform == \
        {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino"}[engine]
    assert cfg.max_batch_size == 64  # the per-request limit
    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == \
        [("image", mc.TYPE_UINT8, [-1, -1, 3])]
    assert [(o.name, o.data_type, list(o.dims)) for o in cfg.output] == \
        [("stylized", mc.TYPE_UINT8, [-1, -1, 3])]
    assert cfg.HasField("dynamic_batching") and list(cfg.dynamic_batching.preferred_batch_size) \
        == [1]  # CPU: no batching by default
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert cfg.parameters["sha256"].string_value == sha
    assert cfg.parameters["version"].string_value == "1"
    assert cfg.parameters["engine"].string_value == engine

    # What `robust-style export --triton-repo` writes for this file: same structure.
    exported = text_format.Parse(triton_config("tiny", sha256=sha), mc.ModelConfig())
    for field in ("name", "input", "output", "version_policy"):
        assert getattr(exported, field) == getattr(cfg, field), field
    assert (exported.platform, exported.backend) == ("onnxruntime_onnx", "onnxruntime")
    assert exported.parameters["sha256"] == cfg.parameters["sha256"]

    with pytest.raises(InferenceServerException) as info:
        client.get_model_config("nope")
    assert "NOT_FOUND" in _status(info.value) and "tiny, tiny2" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.get_model_config("tiny", "7")
    assert "NOT_FOUND" in _status(info.value) and "versions: 1" in info.value.message()


def test_statistics_count_requests_images_and_time_as_triton_does(server: StyleServer) -> None:
    client = _client(server)
    for _ in range(3):
        client.infer("tiny", [_image()])
    client.infer("tiny", [_image(n=2)])  # one request, one execution, two images
    with pytest.raises(InferenceServerException):
        bad = tc.InferInput("image", [1, 4, 4, 3], "UINT8")  # below the minimum size
        bad.set_data_from_numpy(np.zeros((1, 4, 4, 3), np.uint8))
        client.infer("tiny", [bad])

    stats = client.get_inference_statistics("tiny").model_stats
    assert [(s.name, s.version) for s in stats] == [("tiny", "1")]
    s = stats[0]
    assert s.inference_count == 5 and s.execution_count == 4
    st = s.inference_stats
    assert st.success.count == 4 and st.fail.count == 1
    counts = {st.queue.count, st.compute_input.count, st.compute_infer.count,
              st.compute_output.count}
    assert counts == {4}  # perf_analyzer requires the compute counts to be equal
    for d in (st.success, st.fail, st.queue, st.compute_input, st.compute_infer,
              st.compute_output):
        assert d.ns > 0
    # the parts of a request fit inside its total
    assert st.queue.ns + st.compute_input.ns + st.compute_infer.ns + st.compute_output.ns \
        <= st.success.ns
    assert st.compute_infer.ns >= 4 * 100_000  # a real model run takes well over 0.1 ms
    assert {b.batch_size: b.compute_infer.count for b in s.batch_stats} == {1: 3, 2: 1}
    assert s.last_inference > 1_600_000_000_000  # ms since the epoch

    every = client.get_inference_statistics().model_stats
    assert sorted((m.name, m.version) for m in every) == [("tiny", "1"), ("tiny2", "1")]
    assert next(m for m in every if m.name == "tiny2").inference_count == 0
    with pytest.raises(InferenceServerException) as info:
        client.get_inference_statistics("nope")
    assert "NOT_FOUND" in _status(info.value) and "tiny, tiny2" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.get_inference_statistics("tiny", "2")
    assert "NOT_FOUND" in _status(info.value)


def test_stream_infer_records_real_latencies(server: StyleServer) -> None:
    client = _client(server)
    results: list = []
    done = threading.Event()

    def callback(result, error) -> None:
        results.append((result, error))
        if len(results) == 4:
            done.set()

    client.start_stream(callback=callback)
    for i in range(3):
        client.async_stream_infer("tiny", [_image(64)], request_id=str(i))
    client.async_stream_infer("nope", [_image(64)], request_id="x")
    assert done.wait(60)
    client.stop_stream()
    assert sum(e is None for _, e in results) == 3
    s = client.get_inference_statistics("tiny").model_stats[0]
    assert s.inference_stats.success.count == 3 and s.inference_stats.compute_infer.ns > 0
    latency = server.metrics.latency
    ok = (("method", "ModelStreamInfer.request"), ("style", "tiny"))
    assert latency.count(ok) == 3
    assert latency.series[ok][-2] > 3 * 100e-6  # seconds summed: real, not 0.0


def test_load_unload_and_repository_index(server: StyleServer, models_dir: Path,
                                          model_store: Path) -> None:
    client = _client(server)
    index = {m.name: m for m in client.get_model_repository_index().models}
    assert {n: (m.state, m.version) for n, m in index.items()} == \
        {"tiny": ("READY", "1"), "tiny2": ("READY", "1")}

    client.unload_model("tiny2")
    assert not client.is_model_ready("tiny2") and client.is_model_ready("tiny")
    index = {m.name: m for m in client.get_model_repository_index().models}
    assert (index["tiny2"].state, index["tiny2"].reason) == ("UNAVAILABLE", "unloaded")
    assert index["tiny2"].version == "1"  # the last version, as Triton shows it
    stub = kpb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(server.address))
    ready = stub.RepositoryIndex(kpb.RepositoryIndexRequest(ready=True)).models
    assert [m.name for m in ready] == ["tiny"]
    with pytest.raises(InferenceServerException) as info:
        client.infer("tiny2", [_image()])
    assert "NOT_FOUND" in _status(info.value) and "tiny" in info.value.message()
    # the watcher leaves an unloaded file alone, even when it changes
    assert server.registry.scan() is False and not client.is_model_ready("tiny2")

    client.load_model("tiny2")  # new load of the style: the next version number
    assert client.is_model_ready("tiny2", "2")
    assert client.infer("tiny2", [_image()]).get_response().model_version == "2"
    client.load_model("tiny2")  # unchanged file: nothing to do, same version
    assert client.get_model_metadata("tiny2").versions == ["2"]

    # a file that fails to load: the RPC fails with the reason, the others keep serving
    (models_dir / "broken.onnx").write_bytes(b"not an onnx model" * 20)
    with pytest.raises(InferenceServerException) as info:
        client.load_model("broken")
    assert "INVALID_ARGUMENT" in _status(info.value)  # Triton's code for a failed load
    assert "broken.onnx" in info.value.message() and "load failed" in info.value.message()
    index = {m.name: m for m in client.get_model_repository_index().models}
    assert index["broken"].state == "UNAVAILABLE" and index["broken"].reason
    assert index["tiny"].state == index["tiny2"].state == "READY"
    assert client.infer("tiny", [_image()]).as_numpy("stylized").shape == (1, 48, 48, 3)

    # a new file with a new style appears: loadable by its file name before any scan
    shutil.copy(model_store / "tiny.onnx", models_dir / "later.onnx")
    with pytest.raises(InferenceServerException) as info:
        client.load_model("later")  # its style name "tiny" is served from tiny.onnx
    assert "INVALID_ARGUMENT" in _status(info.value) and "already served" in \
        info.value.message()

    for call in (client.load_model, client.unload_model):
        with pytest.raises(InferenceServerException) as info:
            call("nope")
        assert "NOT_FOUND" in _status(info.value) and "tiny" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.load_model("tiny", config='{"max_batch_size": 2}')
    assert "INVALID_ARGUMENT" in _status(info.value)


def test_unload_lets_requests_in_flight_complete(models_dir: Path) -> None:
    srv = start_server(models_dir)
    try:
        client = _client(srv)
        _, batcher = srv.registry.get("tiny")
        results: list = []
        done = threading.Event()

        def callback(result, error) -> None:
            results.append((result, error))
            if len(results) == 6:
                done.set()

        for _ in range(6):
            client.async_infer("tiny", [_image(700)], callback=callback)
        def all_arrived() -> bool:  # every request answered, running or queued
            return len(results) + batcher.queued() + batcher.running() == 6

        tick = threading.Event()
        while not (all_arrived() and batcher.queued() >= 1) and not done.is_set():
            tick.wait(0.002)
        assert batcher.queued() >= 1, "requests must be waiting when the model is unloaded"
        client.unload_model("tiny")
        assert not client.is_model_ready("tiny")
        assert done.wait(120)
        assert [str(e) for _, e in results if e is not None] == []
        assert all(r.as_numpy("stylized").shape[0] == 1 for r, _ in results)
    finally:
        srv.stop(0)


def test_a_changed_file_is_the_next_version(server: StyleServer, models_dir: Path,
                                            model_store: Path) -> None:
    client = _client(server)
    shutil.copy(model_store / "tiny_v2.onnx", models_dir / "tiny.onnx")
    client.load_model("tiny")  # explicit reload of new content
    assert client.get_model_metadata("tiny").versions == ["2"]
    cfg = client.get_model_config("tiny").config
    sha = hashlib.sha256((model_store / "tiny_v2.onnx").read_bytes()).hexdigest()
    assert cfg.parameters["sha256"].string_value == sha
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("tiny", "1")
    assert "NOT_FOUND" in _status(info.value)
