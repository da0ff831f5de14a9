"""The one gRPC interceptor: every RPC of both APIs gets a status and a metric sample."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path

import grpc
import pytest
from server_fixtures import encode, photo, start_server

from robust_style.server.app import StyleServer
from robust_style.server.metrics import Metrics
from robust_style.server.protos.inference import grpc_service_pb2 as kpb
from robust_style.server.protos.inference import grpc_service_pb2_grpc as kgrpc
from robust_style.server.protos.robust_style.v1 import style_transfer_pb2 as pb
from robust_style.server.protos.robust_style.v1 import style_transfer_pb2_grpc as pb_grpc


def _requests(metrics: Metrics) -> dict[tuple[str, str, str, str], float]:
    """(api, method, style, code) -> count, read from the metrics' exposition text."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(metrics.render()):
        for s in family.samples:
            if s.name == "robust_style_requests_total":
                out[(s.labels["api"], s.labels["method"], s.labels["style"],
                     s.labels["code"])] = s.value
    return out


def test_every_rpc_of_both_apis_is_counted(server: StyleServer) -> None:
    channel = grpc.insecure_channel(server.address)
    style, kserve = pb_grpc.StyleTransferStub(channel), kgrpc.GRPCInferenceServiceStub(channel)
    png = encode(photo("coffee", 40))
    style.ListStyles(pb.ListStylesRequest())
    style.Stylize(pb.StylizeRequest(style="tiny", image=png))
    list(style.StylizeStream(iter([pb.StylizeRequest(style="tiny", image=png)] * 2)))
    kserve.ServerLive(kpb.ServerLiveRequest())
    kserve.ServerReady(kpb.ServerReadyRequest())
    kserve.ServerMetadata(kpb.ServerMetadataRequest())
    kserve.RepositoryIndex(kpb.RepositoryIndexRequest())
    kserve.ModelReady(kpb.ModelReadyRequest(name="tiny"))
    kserve.ModelMetadata(kpb.ModelMetadataRequest(name="tiny"))
    with pytest.raises(grpc.RpcError) as info:
        kserve.ModelMetadata(kpb.ModelMetadataRequest(name="tiny2", version="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    got = _requests(server.metrics)
    for key in [("style", "ListStyles", "", "OK"), ("style", "Stylize", "tiny", "OK"),
                ("style", "StylizeStream", "", "OK"), ("kserve", "ServerLive", "", "OK"),
                ("kserve", "ServerReady", "", "OK"), ("kserve", "ServerMetadata", "", "OK"),
                ("kserve", "RepositoryIndex", "", "OK"), ("kserve", "ModelReady", "tiny", "OK"),
                ("kserve", "ModelMetadata", "tiny", "OK"),
                ("kserve", "ModelMetadata", "tiny2", "NOT_FOUND")]:
        assert got.get(key) == 1, (key, got)
    assert got[("style", "StylizeStream.frame", "tiny", "OK")] == 2


def test_refused_rpcs_are_counted_too(models_dir: Path) -> None:
    s = start_server(models_dir, auth_token="s3cret")
    try:
        stub = pb_grpc.StyleTransferStub(grpc.insecure_channel(s.address))
        with pytest.raises(grpc.RpcError) as info:
            stub.ListStyles(pb.ListStylesRequest())
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _requests(s.metrics)[("style", "ListStyles", "", "UNAUTHENTICATED")] == 1
    finally:
        s.stop(0)


def _boom_server(metrics: Metrics) -> tuple[grpc.Server, int]:
    """A real gRPC server with our interceptor in front of handlers that fail unexpectedly."""
    from robust_style.server.interceptors import StatusInterceptor

    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        return {}[request]  # KeyError: a bug, not the client's fault

    def stream(request: bytes, context: grpc.ServicerContext):
        yield b"one"
        raise ZeroDivisionError("secret internal detail")

    handlers = {"Boom": grpc.unary_unary_rpc_method_handler(unary),
                "BoomStream": grpc.unary_stream_rpc_method_handler(stream)}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                         interceptors=[StatusInterceptor(metrics)])
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("robust_style.v1.StyleTransfer", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def test_unexpected_errors_are_internal_one_line_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    server, port = _boom_server(metrics)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        unary = channel.unary_unary("/robust_style.v1.StyleTransfer/Boom")
        with pytest.raises(grpc.RpcError) as info:
            unary(b"x", timeout=10)
        stream = channel.unary_stream("/robust_style.v1.StyleTransfer/BoomStream")
        got = []
        with pytest.raises(grpc.RpcError) as info2:
            for msg in stream(b"x", timeout=10):
                got.append(msg)
    finally:
        server.stop(0)
    assert got == [b"one"]
    for err, name in ((info.value, "KeyError"), (info2.value, "ZeroDivisionError")):
        assert err.code() == grpc.StatusCode.INTERNAL
        assert "\n" not in err.details() and name in err.details()
        assert "Traceback" not in err.details() and "secret" not in err.details()
    counts = _requests(metrics)
    assert counts[("style", "Boom", "", "INTERNAL")] == 1
    assert counts[("style", "BoomStream", "", "INTERNAL")] == 1
    assert "Traceback" in caplog.text  # ... goes to the server log
