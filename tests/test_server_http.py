"""The HTTP front door with real clients: Triton's ``tritonclient.http`` (KServe v2 REST,
binary and JSON tensors), ``perf_analyzer -i http``, and httpx on the image endpoint.

Same process, same data plane as gRPC: the pixels are the gRPC answer's, the statistics
count both doors, the limits and the token are the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from perf_analyzer_tool import find_perf_analyzer
from pixels import assert_pixels_close
from server_fixtures import decode, encode, photo, start_server

from robust_style.server.app import StyleServer
from robust_style.server.dataplane import Limits

tc = pytest.importorskip("tritonclient.http")
tcg = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture()
def server(models_dir: Path) -> Iterator[StyleServer]:
    s = start_server(models_dir, http_port=0)
    yield s
    s.stop(0)


def _url(s: StyleServer) -> str:
    return f"127.0.0.1:{s.http_port}"


def _base(s: StyleServer) -> str:
    return f"http://{_url(s)}"


def _grpc_pixels(s: StyleServer, batch: np.ndarray) -> np.ndarray:
    client = tcg.InferenceServerClient(s.address)
    inp = tcg.InferInput("image", list(batch.shape), "UINT8")
    inp.set_data_from_numpy(batch)
    out = client.infer("tiny", [inp]).as_numpy("stylized")
    client.close()
    return out


def test_tritonclient_http_infer_binary_and_json_as_grpc(server: StyleServer) -> None:
    client = tc.InferenceServerClient(_url(server))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny") and not client.is_model_ready("nope")
    meta = client.get_server_metadata()
    assert meta["name"] == "robust-style" and "binary_tensor_data" in meta["extensions"]
    mm = client.get_model_metadata("tiny")
    assert mm["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}]
    assert mm["outputs"][0]["name"] == "stylized" and mm["versions"] == ["1"]

    content = photo("coffee", 70)
    batch = np.stack([content, content[::-1]])
    want = _grpc_pixels(server, batch)
    for binary_in in (True, False):
        for binary_out in (True, False):
            inp = tc.InferInput("image", list(batch.shape), "UINT8")
            inp.set_data_from_numpy(batch, binary_data=binary_in)
            res = client.infer("tiny", [inp], request_id="r1", outputs=[
                tc.InferRequestedOutput("stylized", binary_data=binary_out)])
            got = res.as_numpy("stylized")
            assert got.shape == batch.shape and got.dtype == np.uint8
            what = f"HTTP binary in {binary_in}, out {binary_out} vs gRPC"
            assert_pixels_close(got[0], want[0], what)
            assert_pixels_close(got[1], want[1], what)
            r = res.get_response()
            assert r["model_version"] == "1" and r["id"] == "r1"
    # no outputs named: all of them, JSON (Triton's default without binary_data_output)
    inp = tc.InferInput("image", [1, *content.shape], "UINT8")
    inp.set_data_from_numpy(content[None])
    assert_pixels_close(client.infer("tiny", [inp], model_version="1").as_numpy("stylized")[0],
                        want[0], "no outputs named")
    assert server.plane.served["kserve-http"] == 2 * 4 + 1
    client.close()


def test_config_statistics_and_errors(server: StyleServer) -> None:
    client = tc.InferenceServerClient(_url(server))
    cfg = client.get_model_config("tiny")
    grpc_cfg = tcg.InferenceServerClient(server.address).get_model_config("tiny", as_json=True)
    g = grpc_cfg["config"]  # proto3 JSON: int64 as strings, defaults left out
    assert (cfg["platform"], cfg["backend"], cfg["parameters"]) == \
        (g["platform"], g["backend"], g["parameters"])
    assert cfg["dynamic_batching"]["max_queue_delay_microseconds"] == \
        int(g["dynamic_batching"]["max_queue_delay_microseconds"])
    assert cfg["name"] == "tiny" and cfg["max_batch_size"] == 64
    assert cfg["input"][0]["dims"] == [-1, -1, 3] and cfg["input"][0]["data_type"] == "TYPE_UINT8"

    x = photo("rocket", 40)[None]
    inp = tc.InferInput("image", list(x.shape), "UINT8")
    inp.set_data_from_numpy(x)
    for _ in range(3):
        client.infer("tiny", [inp])
    stats = client.get_inference_statistics("tiny")["model_stats"]
    assert [(s["name"], s["version"]) for s in stats] == [("tiny", "1")]
    st = stats[0]["inference_stats"]
    assert st["success"]["count"] == 3 and st["fail"] == {"count": 0, "ns": 0}
    assert st["compute_infer"]["ns"] > 0 and isinstance(st["queue"]["ns"], int)
    assert stats[0]["inference_count"] == stats[0]["execution_count"] == 3
    every = client.get_inference_statistics()["model_stats"]
    assert {s["name"] for s in every} == {"tiny", "tiny2"}

    def status(fn, *args, **kw) -> tuple[str, str]:
        with pytest.raises(InferenceServerException) as info:
            fn(*args, **kw)
        return str(info.value.status()), info.value.message()

    code, msg = status(client.infer, "nope", [inp])
    assert code == "404" and "unknown style 'nope'" in msg and "tiny2" in msg
    bad = tc.InferInput("image", list(x.shape), "FP32")
    bad.set_data_from_numpy(x.astype(np.float32))
    code, msg = status(client.infer, "tiny", [bad])
    assert code == "400" and "UINT8" in msg
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    wrong = tc.InferInput("image", list(nchw.shape), "UINT8")
    wrong.set_data_from_numpy(nchw)
    code, msg = status(client.infer, "tiny", [wrong])
    assert code == "400" and "[N, H, W, 3]" in msg
    code, msg = status(client.get_model_config, "tiny", "7")
    assert code == "404" and "no version '7'" in msg
    # failures are counted, as over gRPC
    st = client.get_inference_statistics("tiny")["model_stats"][0]["inference_stats"]
    assert st["fail"]["count"] == 2 and st["success"]["count"] == 3

    # raw HTTP: Triton's error body, the size limit, a broken binary header
    with httpx.Client(base_url=_base(server)) as h:
        r = h.post("/v2/models/tiny/infer", content=b"{not json")
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
        r = h.post("/v2/models/tiny/infer", content=b"{}" + bytes(10),
                   headers={"Inference-Header-Content-Length": "2"})
        assert r.status_code == 400 and "inputs" in r.json()["error"]
        big = {"inputs": [{"name": "image", "datatype": "UINT8", "shape": [1, 2000, 2000, 3],
                           "data": []}]}
        r = h.post("/v2/models/tiny/infer", json=big)
        assert r.status_code == 413 and "limit" in r.json()["error"]
        assert h.get("/v2/models/nope/ready").status_code == 404
        assert h.get("/v2/models/tiny/versions/1/ready").json()["ready"] is True
    client.close()


def test_load_unload_and_repository_index(server: StyleServer) -> None:
    client = tc.InferenceServerClient(_url(server))
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert {n: (m["state"], m["version"]) for n, m in index.items()} == \
        {"tiny": ("READY", "1"), "tiny2": ("READY", "1")}
    client.unload_model("tiny2")
    assert not client.is_model_ready("tiny2") and client.is_model_ready("tiny")
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert (index["tiny2"]["state"], index["tiny2"]["reason"]) == ("UNAVAILABLE", "unloaded")
    # the gRPC door sees the same registry
    assert not tcg.InferenceServerClient(server.address).is_model_ready("tiny2")
    with httpx.Client(base_url=_base(server)) as h:
        ready = h.post("/v2/repository/index", json={"ready": True}).json()
        assert [m["name"] for m in ready] == ["tiny"]
        r = h.post("/v2/repository/models/tiny2/load", json={"parameters": {"config": "{}"}})
        assert r.status_code == 400 and "not supported" in r.json()["error"]
    client.load_model("tiny2")
    assert client.is_model_ready("tiny2", "2")
    client.close()


def test_token_limits_and_readiness(models_dir: Path) -> None:
    s = start_server(models_dir, http_port=0, auth_token="s3cret",
                     limits=Limits(max_pixels=1_000_000), max_message_bytes=200_000)
    try:
        x = photo("rocket", 64)[None]
        inp = tc.InferInput("image", list(x.shape), "UINT8")
        inp.set_data_from_numpy(x)
        with httpx.Client(base_url=_base(s)) as h:
            assert h.get("/v2/health/ready").status_code == 200  # probes need no token
            r = h.get("/v2/models/tiny")
            assert r.status_code == 401 and "bearer token" in r.json()["error"]
            r = h.get("/v2/models/tiny", headers={"Authorization": "Bearer nope"})
            assert r.status_code == 403
            r = h.post("/v2/models/tiny/infer", content=bytes(300_000),
                       headers={"Authorization": "Bearer s3cret"})
            assert r.status_code == 413 and "--max-message-mb" in r.json()["error"]
        client = tc.InferenceServerClient(_url(s))
        with pytest.raises(InferenceServerException) as info:
            client.infer("tiny", [inp])
        assert str(info.value.status()) == "401"
        res = client.infer("tiny", [inp], headers={"Authorization": "Bearer s3cret"})
        assert res.as_numpy("stylized").shape == x.shape
        client.close()
    finally:
        s.stop(0)
    # not ready until a model is loaded: 503, live all along
    empty = models_dir.parent / "empty"
    empty.mkdir()
    s = start_server(empty, http_port=0)
    try:
        with httpx.Client(base_url=_base(s)) as h:
            assert h.get("/v2/health/live").status_code == 200
            r = h.get("/v2/health/ready")
            assert r.status_code == 503 and "not ready" in r.json()["error"]
    finally:
        s.stop(0)


def test_perf_analyzer_over_http_at_concurrency_1_and_2(server: StyleServer,
                                                       tmp_path: Path) -> None:
    found = find_perf_analyzer()
    if isinstance(found, str):
        pytest.skip(found)
    report = tmp_path / "report.csv"
    proc, rows = found.run(
        ["-m", "tiny", "-u", _url(server), "-i", "http", "--shape", "image:256,256,3",
         "--concurrency-range", "1:2", "--measurement-mode", "count_windows",
         "--measurement-request-count", "20", "--stability-percentage", "100",
         "--max-trials", "10", "--percentile", "95"], report)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [int(r["Concurrency"]) for r in rows] == [1, 2], report.read_text()
    for row in rows:
        assert row["Inferences/Second"] > 0 and row["Server Compute Infer"] > 0
        assert 0 < row["p50 latency"] <= row["p95 latency"]
    assert proc.stdout.count("Server:") == 2
    st = tc.InferenceServerClient(_url(server)).get_inference_statistics("tiny")
    assert st["model_stats"][0]["inference_stats"]["success"]["count"] >= 2 * 20


def test_image_endpoint_multipart_raw_and_errors(server: StyleServer) -> None:
    content = photo("astronaut", 96)
    png = encode(content)
    want = _grpc_pixels(server, content[None])[0]
    with httpx.Client(base_url=_base(server), timeout=30) as h:
        r = h.post("/v1/styles/tiny/stylize", files={"image": ("a.png", png, "image/png")})
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.headers["x-style"] == "tiny" and float(r.headers["x-timing-total-ms"]) > 0
        assert_pixels_close(decode(r.content), want, "multipart PNG vs KServe gRPC")
        r = h.post("/v1/styles/tiny/stylize", content=png,
                   params={"format": "jpeg", "quality": 95, "max_side": 48})
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert decode(r.content).shape == (48, 48, 3)
        r = h.post("/v1/styles/tiny/stylize", content=png, params={"strength": 0})
        assert_pixels_close(decode(r.content), content, "strength 0 is the photo")
        r = h.post("/v1/styles/tiny/stylize", content=png, params={"preserve_color": "true"})
        assert r.status_code == 200

        styles = h.get("/v1/styles").json()["styles"]
        assert [s["name"] for s in styles] == ["tiny", "tiny2"]
        assert styles[0]["metadata"]["description"] == "test style tiny"
        thumb = h.get(styles[0]["thumbnail"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert max(decode(thumb.content).shape[:2]) == 256
        assert h.get(styles[0]["thumbnail"]).content == thumb.content  # cached

        def error(status: int, *args: object, **kw: object) -> str:
            r = h.post(*args, **kw)  # type: ignore[arg-type]
            assert r.status_code == status, r.text
            return str(r.json()["error"])

        assert "unknown style 'nope'" in error(404, "/v1/styles/nope/stylize", content=png)
        assert "decode" in error(400, "/v1/styles/tiny/stylize", content=b"not an image" * 9)
        assert "no image" in error(400, "/v1/styles/tiny/stylize", content=b"")
        big = encode(np.zeros((1100, 1000, 3), np.uint8))  # 1.1 MP > the 1 MP test limit
        assert "limit" in error(413, "/v1/styles/tiny/stylize", content=big)
        assert "strength" in error(400, "/v1/styles/tiny/stylize", content=png,
                                   params={"strength": "2"})
        assert "max_side" in error(400, "/v1/styles/tiny/stylize", content=png,
                                   params={"max_side": "big"})
        assert "'image' field" in error(400, "/v1/styles/tiny/stylize",
                                        files={"photo": ("a.png", png, "image/png")})
        assert h.get("/v1/styles/nope/thumbnail").status_code == 404
    assert server.metrics.requests.values[(("api", "http"), ("method", "Stylize"),
                                           ("style", "tiny"), ("code", "200"))] >= 4


def test_serve_options_and_cors(models_dir: Path) -> None:
    from robust_style.cli import build_parser
    from robust_style.cli.cmd_serve import _config

    def cfg(*argv: str):
        return _config(build_parser().parse_args(["serve", *argv]), models_dir)

    assert (cfg().http_port, cfg().cors_origins) == (8000, ())
    assert cfg("--http-port", "-1").http_port is None
    assert cfg("--cors-origin", "https://a.example", "--cors-origin", "*").cors_origins == \
        ("https://a.example", "*")
    s = start_server(models_dir, http_port=0, cors_origins=("https://a.example",))
    try:
        with httpx.Client(base_url=_base(s)) as h:
            r = h.options("/v1/styles/tiny/stylize", headers={
                "Origin": "https://a.example", "Access-Control-Request-Method": "POST"})
            assert r.status_code == 200
            assert r.headers["access-control-allow-origin"] == "https://a.example"
            r = h.get("/v1/styles", headers={"Origin": "https://a.example"})
            assert r.headers["access-control-allow-origin"] == "https://a.example"
            assert "x-style" in r.headers["access-control-expose-headers"].lower()
            r = h.options("/v1/styles", headers={"Origin": "https://evil.example",
                                                 "Access-Control-Request-Method": "GET"})
            assert r.status_code == 400  # not an allowed origin
            assert "<title>robust-style</title>" in h.get("/").text
            assert h.get("/static/app.js").status_code == 200
    finally:
        s.stop(0)
