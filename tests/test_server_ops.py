"""Operations: a real `robust-style serve` process (SIGTERM, no torch), TLS, auth, metrics."""

from __future__ import annotations

import datetime
import json
import os
import queue
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from server_fixtures import encode, photo, start_server

from robust_style.cli import main
from robust_style.netutil import free_port, serve_process
from robust_style.server.app import StyleServer
from robust_style.server.client import ClientError, StyleClient
from robust_style.server.protos.robust_style.v1 import style_transfer_pb2 as pb
from robust_style.server.protos.robust_style.v1 import style_transfer_pb2_grpc as pb_grpc

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


PROBE = r"""
import os, signal, sys, threading
from robust_style.cli import main

models, port, image = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def probe():
    from robust_style.server.client import StyleClient
    try:
        with StyleClient(f"127.0.0.1:{port}") as client:
            assert client.wait_ready(120), "server not ready"
            result = client.stylize(image, "tiny")
            assert result.width == 64
        print("TORCH_MODULES", sorted(m for m in sys.modules if m.split(".")[0] == "torch"),
              flush=True)
    finally:
        os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=probe, daemon=True).start()
sys.exit(main(["serve", "--models", models, "--port", str(port), "--metrics-port", "-1"]))
"""


def test_server_process_never_imports_torch(models_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(encode(photo("chelsea", 64)))
    proc = subprocess.run([sys.executable, "-c", PROBE, str(models_dir), str(free_port()),
                           str(image)], capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "TORCH_MODULES []" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(models_dir: Path) -> None:
    with serve_process(["--models", str(models_dir), "--log-json"], quiet=False,
                       ready_timeout=120, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=ENV) as served:
        proc = served.proc
        frames: queue.Queue = queue.Queue()
        end = object()

        def requests():
            while (item := frames.get()) is not end:
                yield item

        stub = pb_grpc.StyleTransferStub(grpc.insecure_channel(served.target))
        png = encode(photo("astronaut", 64))
        frames.put(pb.StylizeRequest(style="tiny", image=png, id="0"))
        responses = stub.StylizeStream(requests(), timeout=120)
        first = next(responses)  # the stream is now in flight
        proc.send_signal(signal.SIGTERM)
        for i in (1, 2):
            frames.put(pb.StylizeRequest(style="tiny", image=png, id=str(i)))
        frames.put(end)
        rest = list(responses)
        assert [r.id for r in (first, *rest)] == ["0", "1", "2"]
        assert proc.wait(timeout=60) == 0
    err = proc.stderr.read().decode()
    assert "Traceback" not in err
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    messages = [rec["message"] for rec in logs]
    assert "received SIGTERM" in messages and messages[-1] == "stopped", err[-2000:]
    assert all({"time", "level", "logger"} <= set(rec) for rec in logs)


def test_serve_without_models_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    assert main(["serve", "--models", str(tmp_path), "--port", "0", "--metrics-port", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no style models" in err[0] and "--allow-empty" in err[0]
    (tmp_path / "bad.onnx").write_bytes(b"nope")
    assert main(["serve", "--models", str(tmp_path), "--port", "0", "--metrics-port", "-1"]) == 2
    assert "could be loaded" in capsys.readouterr().err.strip().splitlines()[-1]
    assert main(["serve", "--models", str(tmp_path / "missing")]) == 2


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_and_bearer_token(models_dir: Path, tmp_path: Path) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    cert, key = _self_signed(tmp_path)
    s = start_server(models_dir, tls_cert=cert, tls_key=key, auth_token="s3cret")
    target = f"localhost:{s.port}"
    try:
        with StyleClient(target, root_cert=cert.read_bytes(), token="s3cret") as client:
            assert [st.name for st in client.list_styles()] == ["tiny", "tiny2"]
            assert client.stylize(encode(photo("coffee", 40)), "tiny").width == 40
        for token in (None, "wrong", "s3cret-but-longer"):
            with StyleClient(target, root_cert=cert.read_bytes(), token=token) as client, \
                    pytest.raises(ClientError) as info:
                client.list_styles()
            assert info.value.code == grpc.StatusCode.UNAUTHENTICATED, token
        # Health stays open for load-balancer probes; plaintext is refused.
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        health = health_pb2_grpc.HealthStub(grpc.secure_channel(target, creds))
        assert health.Check(health_pb2.HealthCheckRequest()).status == \
            health_pb2.HealthCheckResponse.SERVING
        with StyleClient(target, token="s3cret", timeout=5) as client, \
                pytest.raises(ClientError) as info:
            client.list_styles()
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
    finally:
        s.stop(0)


def test_metrics_text_parses(server: StyleServer) -> None:
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    stub = pb_grpc.StyleTransferStub(grpc.insecure_channel(server.address))
    png = encode(photo("rocket", 48))
    for _ in range(3):
        stub.Stylize(pb.StylizeRequest(style="tiny", image=png))
    for i in range(5):  # unknown names from clients must not become label values
        with pytest.raises(grpc.RpcError):
            stub.Stylize(pb.StylizeRequest(style=f"nope{i}", image=png))
    with urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert all(f.type in ("counter", "gauge", "histogram") for f in families.values()), \
        [(f.name, f.type) for f in families.values()]
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    ok = (("api", "style"), ("code", "OK"), ("method", "Stylize"), ("style", "tiny"))
    assert samples[("robust_style_requests_total", ok)] == 3
    bad = (("api", "style"), ("code", "NOT_FOUND"), ("method", "Stylize"), ("style", ""))
    assert samples.get(("robust_style_requests_total", bad)) == 5, text[:1200]
    assert "nope" not in text
    assert families["robust_style_request_latency_seconds"].type == "histogram"
    assert families["robust_style_queue_seconds"].type == "histogram"
    assert samples[("robust_style_models_ready", ())] == 2
    buckets = [s for s in families["robust_style_batch_size"].samples
               if s.name.endswith("_bucket") and s.labels["style"] == "tiny"]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and counts[-1] == 3 and buckets[-1].labels["le"] == "+Inf"
    assert samples[("robust_style_batch_size_count", (("style", "tiny"),))] == 3
    assert np.isclose(samples[("robust_style_batch_size_sum", (("style", "tiny"),))], 3)


def test_metrics_speak_openmetrics_when_asked(server: StyleServer) -> None:
    """prometheus-client's exposition: content negotiation, as Prometheus 2.5+ scrapes."""
    from urllib.request import Request, urlopen

    req = Request(f"http://127.0.0.1:{server.metrics_port}/metrics",
                  headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        text = resp.read().decode()
    assert text.rstrip().endswith("# EOF") and "robust_style_models_ready 2" in text


def test_bad_workers_and_busy_metrics_port_are_one_line_errors(
        models_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["serve", "--models", str(models_dir), "--port", "0"]
    assert main([*base, "--metrics-port", "-1", "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads must be at least 1" in err[0]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main([*base, "--metrics-port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "metrics" in err[0] and str(port) in err[0], err


def test_negative_max_side_is_a_one_line_error(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from robust_style.server.client import ClientError, StyleClient

    img = tmp_path / "a.png"
    img.write_bytes(encode(photo("coffee", 32)))
    for argv in (["stylize", str(img), "--style", "x", "--server", "127.0.0.1:1"],
                 ["demo", str(img), "--max-side", "-5"]):
        if argv[0] == "stylize":
            argv.extend(["--max-side", "-5"])
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--max-side" in err[0], err
    with StyleClient("127.0.0.1:1") as client, pytest.raises(ClientError, match="max_side"):
        client.stylize(img, "x", max_side=-5)


def test_trt_engine_cache_defaults_to_the_xdg_cache(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from robust_style.cli import build_parser
    from robust_style.cli.cmd_serve import _config

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    args = build_parser().parse_args(["serve", "--models", str(tmp_path)])
    cfg = _config(args, tmp_path)
    assert cfg.registry.engine.providers.trt_cache_dir == str(tmp_path / "cache" / "robust-style" / "trt")
    trt = dict(cfg.registry.engine.providers.candidates())["TensorrtExecutionProvider"]
    assert trt["trt_engine_cache_enable"] is True
    monkeypatch.delenv("XDG_CACHE_HOME")
    cfg = _config(build_parser().parse_args(["serve"]), tmp_path)
    assert cfg.registry.engine.providers.trt_cache_dir == str(Path.home() / ".cache/robust-style/trt")
    off = build_parser().parse_args(["serve", "--trt-cache-dir", ""])
    assert _config(off, tmp_path).registry.engine.providers.trt_cache_dir == ""


def test_serve_process_reports_a_server_that_exits_instead_of_hanging(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="exited with code 2"), \
            serve_process(["--models", str(tmp_path)], ready_timeout=120,
                          stderr=subprocess.DEVNULL):
        pass
