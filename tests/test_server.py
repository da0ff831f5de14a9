"""Both gRPC APIs, health and reflection against a real server on 127.0.0.1 (port 0)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from pixels import assert_pixels_close
from server_fixtures import decode, encode, photo, start_server

from robust_style.server.app import StyleServer
from robust_style.server.batching import BatchConfig
from robust_style.server.protos.inference import grpc_service_pb2 as kpb
from robust_style.server.protos.inference import grpc_service_pb2_grpc as kgrpc
from robust_style.server.protos.robust_style.v1 import style_transfer_pb2 as pb
from robust_style.server.protos.robust_style.v1 import style_transfer_pb2_grpc as pb_grpc


def _style(s: StyleServer) -> pb_grpc.StyleTransferStub:
    return pb_grpc.StyleTransferStub(grpc.insecure_channel(s.address))


def _kserve(s: StyleServer) -> kgrpc.GRPCInferenceServiceStub:
    opts = [("grpc.max_receive_message_length", 256 * 1024 * 1024)]  # big test batches
    return kgrpc.GRPCInferenceServiceStub(grpc.insecure_channel(s.address, options=opts))


def _code(fn, *args, **kw) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, **kw)
    return info.value.code(), info.value.details()


def test_list_styles_reports_metadata_version_readiness(server: StyleServer) -> None:
    styles = {s.name: s for s in _style(server).ListStyles(pb.ListStylesRequest()).styles}
    assert set(styles) == {"tiny", "tiny2"}
    tiny = styles["tiny"]
    assert tiny.ready and tiny.version == "1" and tiny.file == "tiny.onnx"
    assert len(tiny.sha256) == 64 and tiny.sha256 != styles["tiny2"].sha256
    assert tiny.metadata["name"] == "tiny" and tiny.metadata["description"] == "test style tiny"
    assert tiny.metadata["tensor_convention"].startswith("uint8 NHWC")
    # no GPU here: auto serves on OpenVINO where it works, else ONNX Runtime's CPU provider
    from robust_style.server.engines import openvino_status

    want = "openvino" if openvino_status().available else "onnxruntime"
    assert tiny.engine == want and tiny.precision in ("fp32", "bf16") and tiny.sha256
    if want == "onnxruntime":
        assert list(tiny.providers) == ["CPUExecutionProvider"]
    else:
        assert tiny.providers[0].startswith("CPU") and "accuracy gate" in tiny.engine_note


def test_stylize_png_jpeg_and_options(server: StyleServer) -> None:
    stub = _style(server)
    content = photo("astronaut", 75)  # odd size on purpose
    r = stub.Stylize(pb.StylizeRequest(style="tiny", image=encode(content, "JPEG")))
    out = decode(r.image)
    assert r.mime_type == "image/png" and r.image[:4] == b"\x89PNG"
    assert (r.width, r.height) == (content.shape[1], content.shape[0]) == out.shape[1::-1]
    assert r.style == "tiny" and r.version == "1"
    assert r.timing.total_ms >= r.timing.inference_ms > 0
    assert np.abs(out.astype(int) - content).mean() > 10, "the output must be stylised"

    png = encode(content)
    j = stub.Stylize(pb.StylizeRequest(style="tiny", image=png, format=pb.IMAGE_FORMAT_JPEG,
                                       quality=80))
    assert j.mime_type == "image/jpeg" and j.image[:2] == b"\xff\xd8"

    zero = stub.Stylize(pb.StylizeRequest(style="tiny", image=png, strength=0.0))
    np.testing.assert_array_equal(decode(zero.image), content)  # strength 0 = the photo
    full = decode(stub.Stylize(pb.StylizeRequest(style="tiny", image=png)).image).astype(int)
    half = decode(stub.Stylize(pb.StylizeRequest(style="tiny", image=png, strength=0.5)).image)
    assert np.abs(half - (full + content) / 2).max() <= 1.0

    kept = decode(stub.Stylize(pb.StylizeRequest(style="tiny", image=png,
                                                 preserve_color=True)).image)
    assert np.abs(kept.astype(int).mean(axis=(0, 1)) - content.mean(axis=(0, 1))).max() < \
        np.abs(full.mean(axis=(0, 1)) - content.mean(axis=(0, 1))).max()

    small = stub.Stylize(pb.StylizeRequest(style="tiny", image=png, max_side=40))
    assert max(small.width, small.height) == 40


def test_stylize_stream_answers_in_order(server: StyleServer) -> None:
    frames = [photo(n, 64) for n in ("astronaut", "coffee", "chelsea", "rocket", "astronaut")]
    reqs = (pb.StylizeRequest(style="tiny2", image=encode(f), id=f"f{i}")
            for i, f in enumerate(frames))
    out = list(_style(server).StylizeStream(reqs))
    assert [r.id for r in out] == [f"f{i}" for i in range(5)]
    assert [(r.height, r.width) for r in out] == [f.shape[:2] for f in frames]
    assert_pixels_close(decode(out[0].image), decode(out[4].image), "same frame, other batch")


def test_raw_frames_match_png_frames_and_bad_raw_input_is_refused(server: StyleServer) -> None:
    """Raw RGB frames (no encode/decode) give the pixels PNG frames give (PNG is lossless,
    so equal up to the batch's 1 LSB); a wrong byte count or a missing side is
    INVALID_ARGUMENT naming the numbers (the pixel limit is the encoded images' check)."""
    from robust_style.server.client import StyleClient

    frames = [photo(n, 96) for n in ("astronaut", "coffee", "chelsea")]
    with StyleClient(server.address) as client:
        raw = list(client.stylize_frames(iter(frames), "tiny2", strength=0.8))
        png = list(client.stylize_frames(iter(frames), "tiny2", strength=0.8, raw=False))
        small = list(client.stylize_frames(iter(frames[:1]), "tiny2", max_side=48))
    assert [f.shape for f in raw] == [f.shape for f in frames]
    for a, b in zip(raw, png, strict=True):
        assert_pixels_close(a, b, "raw vs PNG frame")
    assert small[0].shape == (48, 48, 3)

    stub, frame = _style(server), frames[0]
    one = stub.Stylize(pb.StylizeRequest(style="tiny2", image=frame.tobytes(), raw_width=96,
                                         raw_height=96, format=pb.IMAGE_FORMAT_RAW_RGB))
    assert one.mime_type == "application/x-raw-rgb" and len(one.image) == 96 * 96 * 3
    encoded = decode(stub.Stylize(pb.StylizeRequest(style="tiny2", image=encode(frame))).image)
    assert_pixels_close(np.frombuffer(one.image, np.uint8).reshape(96, 96, 3), encoded,
                        "raw in and out")
    with pytest.raises(grpc.RpcError) as info:
        stub.Stylize(pb.StylizeRequest(style="tiny2", image=frame.tobytes()[:-3], raw_width=96,
                                       raw_height=96))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "27648 bytes, got 27645" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        stub.Stylize(pb.StylizeRequest(style="tiny2", image=b"", raw_width=96))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "96x0 px" in info.value.details()


def test_tritonclient_gets_the_same_pixels_as_the_own_api(server: StyleServer) -> None:
    tc = pytest.importorskip("tritonclient.grpc")
    client = tc.InferenceServerClient(server.address)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny") and not client.is_model_ready("nope")
    meta = client.get_server_metadata()
    assert meta.name == "robust-style" and meta.version
    mm = client.get_model_metadata("tiny")
    engine = server.registry.get("tiny")[0].engine_name
    assert mm.platform == {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino"}[engine]
    assert mm.inputs[0].name == "image"
    assert list(mm.inputs[0].shape) == [-1, -1, -1, 3] and mm.outputs[0].datatype == "UINT8"
    index = client.get_model_repository_index()
    assert {m.name for m in index.models} == {"tiny", "tiny2"}

    content = photo("coffee", 70)
    own = decode(_style(server).Stylize(pb.StylizeRequest(style="tiny",
                                                          image=encode(content))).image)
    batch = np.stack([content, content[::-1]])
    inp = tc.InferInput("image", list(batch.shape), "UINT8")
    inp.set_data_from_numpy(batch)
    res = client.infer("tiny", [inp], outputs=[tc.InferRequestedOutput("stylized")])
    got = res.as_numpy("stylized")
    assert got.shape == batch.shape and got.dtype == np.uint8
    assert_pixels_close(got[0], own, "batch of two vs the image alone")
    assert res.get_response().model_version == mm.versions[0]

    # ModelStreamInfer, Triton's streaming API, through tritonclient.
    results: list = []
    done = threading.Event()

    def callback(result, error) -> None:
        results.append((result, error))
        if len(results) == 2:
            done.set()

    client.start_stream(callback=callback)
    one = tc.InferInput("image", [1, *content.shape], "UINT8")
    one.set_data_from_numpy(content[None])
    client.async_stream_infer("tiny", [one], request_id="a")
    client.async_stream_infer("nope", [one], request_id="b")
    assert done.wait(30)
    client.stop_stream()
    ok = [r for r, e in results if e is None]
    errors = [e for r, e in results if e is not None]
    assert len(ok) == 1 and len(errors) == 1 and "NOT_FOUND" in str(errors[0])
    assert_pixels_close(ok[0].as_numpy("stylized")[0], own, "stream vs unary")
    client.close()


def test_kserve_rpcs_with_uint_contents_and_errors(server: StyleServer) -> None:
    stub = _kserve(server)
    assert stub.ServerLive(kpb.ServerLiveRequest()).live
    assert stub.ServerReady(kpb.ServerReadyRequest()).ready
    assert stub.ModelReady(kpb.ModelReadyRequest(name="tiny2")).ready
    x = photo("rocket", 32)[None]

    def req(**kw: object) -> kpb.ModelInferRequest:
        r = kpb.ModelInferRequest(model_name=kw.pop("model", "tiny"), id="7")
        inp = r.inputs.add(name=kw.pop("name", "image"), datatype=kw.pop("dtype", "UINT8"),
                           shape=kw.pop("shape", list(x.shape)))
        if kw.pop("contents", False):
            inp.contents.uint_contents.extend(x.ravel().tolist())
        else:
            r.raw_input_contents.append(kw.pop("raw", x.tobytes()))
        return r

    via_values = stub.ModelInfer(req(contents=True))
    via_raw = stub.ModelInfer(req())
    assert via_values.id == "7" and list(via_raw.outputs[0].shape) == list(x.shape)
    assert via_values.raw_output_contents[0] == via_raw.raw_output_contents[0]

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    code, msg = _code(stub.ModelInfer, req(dtype="FP32"))
    assert code == invalid and "UINT8" in msg
    code, msg = _code(stub.ModelInfer, req(shape=[1, 3, 32, x.shape[2]]))
    assert code == invalid and "[N, H, W, 3]" in msg
    code, msg = _code(stub.ModelInfer, req(raw=x.tobytes()[:-5]))
    assert code == invalid and "bytes" in msg
    code, msg = _code(stub.ModelInfer, req(name="input"))
    assert code == invalid and "'image'" in msg
    code, msg = _code(stub.ModelInfer, req(shape=[1, 4, 4, 3], raw=bytes(48)))
    assert code == invalid and "8 px" in msg
    code, _ = _code(stub.ModelInfer, req(model="nope"))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = _code(stub.ModelMetadata, kpb.ModelMetadataRequest(name="tiny", version="zz"))
    assert code == grpc.StatusCode.NOT_FOUND
    big = [1, 2000, 2000, 3]  # 4 MP > the 1 MP limit of the test server
    code, msg = _code(stub.ModelInfer, req(shape=big, raw=b""))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit" in msg


def test_own_api_error_statuses(server: StyleServer) -> None:
    stub = _style(server)
    png = encode(photo("coffee", 48))
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    code, msg = _code(stub.Stylize, pb.StylizeRequest(style="picasso", image=png))
    assert code == grpc.StatusCode.NOT_FOUND and "tiny, tiny2" in msg
    code, msg = _code(stub.Stylize, pb.StylizeRequest(style="tiny", image=b""))
    assert code == invalid and "empty" in msg
    code, msg = _code(stub.Stylize, pb.StylizeRequest(style="tiny", image=b"\x00" * 100))
    assert code == invalid and "cannot decode" in msg
    code, msg = _code(stub.Stylize, pb.StylizeRequest(style="tiny",
                                                      image=encode(np.zeros((1, 300, 3), np.uint8))))
    assert code == invalid and "at least 8 px" in msg
    code, msg = _code(stub.Stylize, pb.StylizeRequest(style="tiny", image=png, strength=1.5))
    assert code == invalid and "strength" in msg
    huge = encode(np.zeros((1100, 1000, 3), np.uint8))  # 1.1 MP > 1 MP limit
    code, msg = _code(stub.Stylize, pb.StylizeRequest(style="tiny", image=huge))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit" in msg
    # Larger than the server's max message size: refused by gRPC itself.
    small_limit = start_server(server.config.registry.models_dir, max_message_bytes=100_000)
    try:
        code, _ = _code(_style(small_limit).Stylize,
                        pb.StylizeRequest(style="tiny", image=b"\x00" * 200_000))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        small_limit.stop(0)
    # The server is still fine after all that.
    assert stub.Stylize(pb.StylizeRequest(style="tiny", image=png)).width == 48


def test_health_and_reflection(server: StyleServer) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    channel = grpc.insecure_channel(server.address)
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", "robust_style.v1.StyleTransfer", "inference.GRPCInferenceService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=name)).status
        assert status == health_pb2.HealthCheckResponse.SERVING, name

    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    req = reflection_pb2.ServerReflectionRequest(list_services="")
    resp = next(refl.ServerReflectionInfo(iter([req])))
    names = {s.name for s in resp.list_services_response.service}
    assert {"robust_style.v1.StyleTransfer", "inference.GRPCInferenceService",
            "grpc.health.v1.Health"} <= names
    for symbol in ("robust_style.v1.StyleTransfer", "inference.GRPCInferenceService"):
        req = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        resp = next(refl.ServerReflectionInfo(iter([req])))
        assert resp.file_descriptor_response.file_descriptor_proto, symbol


def test_health_not_serving_until_a_model_is_loaded(model_store: Path, tmp_path: Path) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    empty = tmp_path / "empty"
    empty.mkdir()
    s = start_server(empty, poll_seconds=0.1)
    try:
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(s.address))
        check = lambda: health.Check(health_pb2.HealthCheckRequest(service="")).status  # noqa: E731
        assert check() == health_pb2.HealthCheckResponse.NOT_SERVING
        assert not _kserve(s).ServerReady(kpb.ServerReadyRequest()).ready
        (empty / "tiny.onnx").write_bytes((model_store / "tiny.onnx").read_bytes())
        stream = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=60)
        for update in stream:
            if update.status == health_pb2.HealthCheckResponse.SERVING:
                break
        assert check() == health_pb2.HealthCheckResponse.SERVING
        stream.cancel()
    finally:
        s.stop(0)


def _metric(s: StyleServer, name: str, **labels: str) -> float:
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    text = urlopen(f"http://127.0.0.1:{s.metrics_port}/metrics", timeout=10).read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _busy_and_small_requests(server, seconds: float):
    """(batcher, a request that keeps the model busy ~``seconds`` here, a tiny request).

    The busy request's batch is sized from one measured 512 px run, so it blocks for about
    the same time on any machine.
    """
    model, batcher = server.registry.get("tiny")
    start = time.monotonic()
    model.run(np.zeros((1, 512, 512, 3), np.uint8))
    one = time.monotonic() - start
    n = int(min(64, max(2, np.ceil(seconds / one))))
    big = np.zeros((n, 512, 512, 3), np.uint8)
    req = kpb.ModelInferRequest(model_name="tiny", raw_input_contents=[big.tobytes()])
    req.inputs.add(name="image", datatype="UINT8", shape=list(big.shape))
    small = kpb.ModelInferRequest(model_name="tiny", raw_input_contents=[bytes(32 * 32 * 3)])
    small.inputs.add(name="image", datatype="UINT8", shape=[1, 32, 32, 3])
    return batcher, req, small


def test_deadline_expired_requests_are_not_run_and_queue_full_is_immediate(
        models_dir: Path) -> None:
    """One request at a time (max_batch 1), three may wait: the rest is refused at once."""
    s = start_server(models_dir, batch=BatchConfig(max_batch=1, max_queue=3))
    try:
        stub = _kserve(s)
        batcher, req, small = _busy_and_small_requests(s, seconds=2.0)

        first = stub.ModelInfer.future(req)
        assert _wait_for(lambda: batcher.running() == 1)
        # The worker is busy with `first`; this one waits in the queue past its deadline.
        code, _ = _code(stub.ModelInfer, small, timeout=0.3)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        queued = [stub.ModelInfer.future(small) for _ in range(2)]
        assert _wait_for(lambda: batcher.queued() >= 3)  # expired one + 2
        assert batcher.running() == 1, "the test needs `first` still running here"
        code, msg = _code(stub.ModelInfer, small)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "queued" in msg
        assert first.result(timeout=300).outputs[0].shape[0] == req.inputs[0].shape[0]
        for f in queued:
            assert f.result(timeout=120).outputs[0].shape[0] == 1
        assert _metric(s, "robust_style_deadline_skipped_total", style="tiny") == 1
        assert _metric(s, "robust_style_requests_total", method="ModelInfer",
                       code="RESOURCE_EXHAUSTED") == 1
    finally:
        s.stop(0)


def _wait_for(cond, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_dynamic_batching_groups_same_sized_requests(models_dir: Path) -> None:
    s = start_server(models_dir, batch=BatchConfig(max_batch=4, max_delay_ms=1000))
    try:
        stub = _kserve(s)
        frames = [photo(n, 40) for n in ("astronaut", "coffee", "chelsea", "rocket")]
        frames = [f[:24, :40] for f in frames]  # all 24x40
        odd = photo("astronaut", 40)[:30, :32]

        def request(x: np.ndarray) -> kpb.ModelInferRequest:
            r = kpb.ModelInferRequest(model_name="tiny", raw_input_contents=[x[None].tobytes()])
            r.inputs.add(name="image", datatype="UINT8", shape=[1, *x.shape])
            return r

        futures = [stub.ModelInfer.future(request(np.ascontiguousarray(f))) for f in frames]
        other = stub.ModelInfer.future(request(np.ascontiguousarray(odd)))
        outs = [np.frombuffer(f.result(timeout=60).raw_output_contents[0], np.uint8)
                for f in futures]
        assert list(other.result(timeout=60).outputs[0].shape) == [1, 30, 32, 3]
        batches = s.metrics.batch.series[(("style", "tiny"),)]
        runs, images_run = batches[-1], batches[-2]
        assert images_run == 5 and runs < 5, "same-sized requests must share a run"
        # A batched run gives each request the pixels it gets alone.
        model, _ = s.registry.get("tiny")
        for f, out in zip(frames, outs, strict=True):
            alone = model.run(np.ascontiguousarray(f)[None]).ravel()
            assert np.abs(alone.astype(int) - out).max() <= 1
    finally:
        s.stop(0)


def test_provider_probe_picks_a_provider_that_really_runs(model_store: Path,
                                                          capfd: pytest.CaptureFixture[str]
                                                          ) -> None:
    """onnxruntime-gpu lists CUDA/TensorRT without a GPU; the probe must not believe it."""
    import onnxruntime as ort

    from robust_style.server.engines import ProviderConfig, probe_providers

    data = (model_store / "tiny.onnx").read_bytes()
    for device in ("auto", "cuda", "tensorrt"):
        chosen = probe_providers(ProviderConfig(device=device), data)
        assert chosen[-1][0] == "CPUExecutionProvider"
        sess = ort.InferenceSession(data, providers=chosen)
        assert sess.get_providers()[0] == chosen[0][0], (device, chosen)
    assert probe_providers(ProviderConfig(device="cpu"), data) == [("CPUExecutionProvider", {})]
    out = capfd.readouterr()
    assert "EP Error" not in out.out + out.err, "fallback must be quiet"
    with pytest.raises(ValueError, match="unknown device"):
        ProviderConfig(device="npu").candidates()


def test_overload_at_default_settings_is_refused_not_queued_unseen(models_dir: Path) -> None:
    """Default queue (64) and workers: 100 requests behind a busy model; the excess is refused.

    With fewer gRPC threads than ``max_queue`` the style's queue never fills and the excess
    waits unbounded in gRPC's executor; now it gets RESOURCE_EXHAUSTED at once.
    """
    s = start_server(models_dir, batch=BatchConfig(max_batch=1))
    try:
        stub = _kserve(s)
        batcher, req, small = _busy_and_small_requests(s, seconds=3.0)
        first = stub.ModelInfer.future(req)
        assert _wait_for(lambda: batcher.running() == 1)
        many = [stub.ModelInfer.future(small, timeout=120) for _ in range(100)]
        refused = []
        for f in many:
            if f.exception(timeout=120) is not None:
                refused.append(f.exception())
        assert refused, "an overload at default settings must be refused"
        assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert len(refused) >= 100 - 64
        assert first.result(timeout=300).outputs[0].shape[0] == req.inputs[0].shape[0]
    finally:
        s.stop(0)


def test_request_on_a_removed_styles_batcher_is_not_found_shutdown_is_exhausted() -> None:
    from robust_style.server.batching import Batcher, QueueFull, StyleRemoved
    from robust_style.server.interceptors import status_of

    class Echo:
        def run(self, batch: np.ndarray) -> np.ndarray:
            return batch

    arr = np.zeros((1, 8, 8, 3), np.uint8)
    removed, shut = Batcher("gone", BatchConfig()), Batcher("up", BatchConfig())
    assert removed.submit(Echo(), arr).result(timeout=30).output.shape == arr.shape
    removed.stop(removed=True)
    shut.stop()
    with pytest.raises(StyleRemoved) as info:
        removed.submit(Echo(), arr)
    assert status_of(info.value)[0] == grpc.StatusCode.NOT_FOUND
    with pytest.raises(QueueFull) as info2:
        shut.submit(Echo(), arr)
    assert status_of(info2.value)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_max_side_rescues_an_image_over_the_pixel_limit(server: StyleServer) -> None:
    """The limit (1 Mpx here) applies after ``max_side``, as the error message suggests."""
    big = np.tile(photo("astronaut", 512), (2, 3, 1))  # 1024 x 1536 = 1.57 Mpx
    png = encode(big)
    code, msg = _code(_style(server).Stylize, pb.StylizeRequest(style="tiny", image=png))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_side" in msg
    resp = _style(server).Stylize(pb.StylizeRequest(style="tiny", image=png, max_side=192))
    assert (resp.width, resp.height) == (192, 128)
