"""Assembly of the server: gRPC services, health, reflection, interceptors, TLS, metrics,
the HTTP front door (:mod:`robust_style.server.rest`), signals.

:class:`StyleServer` binds first (health ``NOT_SERVING``), then loads and warms up the
models in the background and turns health ``SERVING`` once at least one style is ready.
Health has the overall service ``""`` and one entry per API; liveness (KServe
``ServerLive``) is true as soon as the port is open.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from robust_style.server.dataplane import DataPlane, Limits
from robust_style.server.interceptors import HEALTH_NAME, AuthInterceptor, StatusInterceptor
from robust_style.server.kserve.service import SERVICE_NAME as KSERVE_NAME
from robust_style.server.kserve.service import KServeService
from robust_style.server.metrics import Metrics, MetricsHTTPServer
from robust_style.server.protos import POOL
from robust_style.server.protos.inference import grpc_service_pb2_grpc as kserve_grpc
from robust_style.server.protos.robust_style.v1 import style_transfer_pb2_grpc as style_grpc
from robust_style.server.registry import ModelRegistry, RegistryConfig
from robust_style.server.style_api.service import SERVICE_NAME as STYLE_NAME
from robust_style.server.style_api.service import StyleTransferService

if TYPE_CHECKING:
    from robust_style.server.rest.app import HTTPFrontDoor

__all__ = ["ServerConfig", "StyleServer", "serve_until_signal"]

log = logging.getLogger(__name__)

SERVICES = (STYLE_NAME, KSERVE_NAME)


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``robust-style serve`` configures (built by the CLI)."""

    registry: RegistryConfig
    host: str = "127.0.0.1"
    port: int = 8001
    limits: Limits = field(default_factory=Limits)
    max_message_bytes: int = 64 * 1024 * 1024
    #: gRPC worker threads; None = :meth:`worker_threads` (``max_queue`` + 32).
    workers: int | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    auth_token: str | None = None
    grace_seconds: float = 10.0
    #: KServe v2 REST, ``/v1/styles`` and the web page (None = no HTTP; 0 = any free port).
    http_port: int | None = None
    #: Origins allowed to call the HTTP API from a browser (CORS); ``"*"`` for any.
    cors_origins: tuple[str, ...] = ()

    def worker_threads(self) -> int:
        """Threads = concurrent RPCs allowed; more than one style's queue bound.

        Every unary RPC holds a worker thread while it waits for its style's queue, so with
        fewer threads than ``max_queue`` the queue never fills: excess requests would wait,
        unbounded, in gRPC's own executor queue instead of being refused. With ``max_queue``
        + 32 threads one style's queue can fill (-> RESOURCE_EXHAUSTED from the batcher)
        while other styles, streams and health checks still get threads; beyond that gRPC
        itself answers RESOURCE_EXHAUSTED (``maximum_concurrent_rpcs``).
        """
        if self.workers is not None:
            return self.workers
        return self.registry.batch.max_queue + 32


def _register_descriptors() -> None:
    """Health and reflection protos in our private pool, so reflection can describe them."""
    for fd in (health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        try:
            POOL.FindFileByName(fd.name)
        except KeyError:
            POOL.AddSerializedFile(fd.serialized_pb)


class StyleServer:
    """The running server. ``start()`` -> ``wait_ready()`` -> ``stop()``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.health = health.HealthServicer()
        self.registry = ModelRegistry(config.registry, self.metrics, on_change=self._update_health)
        self.metrics.set_style_check(self.registry.has)
        self._loaded = threading.Event()
        self._stopped = False
        self.port = 0
        self.metrics_port: int | None = None
        #: The bound HTTP port (None while there is no HTTP front door).
        self.http_port: int | None = None
        self._http: HTTPFrontDoor | None = None
        self._metrics_http: MetricsHTTPServer | None = None
        opts = [("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.max_send_message_length", config.max_message_bytes),
                ("grpc.so_reuseport", 0)]
        # Outermost first: errors and metrics see every RPC, refused ones included.
        interceptors: list[grpc.ServerInterceptor] = [StatusInterceptor(self.metrics)]
        if config.auth_token:
            interceptors.append(AuthInterceptor(config.auth_token))
        workers = config.worker_threads()
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers,
                                                             thread_name_prefix="grpc"),
                                  options=opts, interceptors=interceptors,
                                  maximum_concurrent_rpcs=workers)
        self.plane = DataPlane(self.registry, config.limits)
        style_grpc.add_StyleTransferServicer_to_server(
            StyleTransferService(self.plane, self.metrics), self.server)
        self.kserve = KServeService(self.plane, self.metrics, self.ready)
        kserve_grpc.add_GRPCInferenceServiceServicer_to_server(self.kserve, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        _register_descriptors()
        reflection.enable_server_reflection(
            (*SERVICES, HEALTH_NAME, reflection.SERVICE_NAME), self.server, pool=POOL)
        for name in ("", *SERVICES):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    @property
    def tls(self) -> bool:
        return self.config.tls_cert is not None

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    def ready(self) -> bool:
        return self._loaded.is_set() and bool(self.registry.styles()) and not self._stopped

    def start(self, load_in_background: bool = True) -> StyleServer:
        cfg = self.config
        bind = f"{cfg.host}:{cfg.port}"
        if cfg.tls_cert is not None:
            if cfg.tls_key is None:
                raise ValueError("TLS needs both a certificate and a key")
            creds = grpc.ssl_server_credentials(
                [(cfg.tls_key.read_bytes(), cfg.tls_cert.read_bytes())])
            self.port = self.server.add_secure_port(bind, creds)
        else:
            self.port = self.server.add_insecure_port(bind)
        if self.port == 0:
            raise OSError(f"cannot listen on {bind} (port in use?)")
        if cfg.metrics_port is not None:
            try:
                http = MetricsHTTPServer(self.metrics, cfg.metrics_host, cfg.metrics_port)
            except OSError as exc:
                raise OSError(f"cannot serve metrics on {cfg.metrics_host}:{cfg.metrics_port} "
                              f"({exc.strerror or exc}); pick another --metrics-port or -1 "
                              "for none") from None
            self._metrics_http = http.start()
            self.metrics_port = self._metrics_http.port
        if cfg.http_port is not None:
            self._start_http()
        self.server.start()
        log.info("listening on %s (%s)%s", bind.rsplit(":", 1)[0] + f":{self.port}",
                 "TLS" if self.tls else "plaintext",
                 ", bearer-token auth" if cfg.auth_token else "")
        if load_in_background:
            threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        else:
            self._load()
        return self

    def _start_http(self) -> None:
        """The HTTP front door on ``http_port``: the same data plane, limits, token, TLS."""
        from robust_style.server.rest.app import HTTPFrontDoor, build_app
        from robust_style.server.rest.endpoint import Endpoints

        cfg = self.config
        executor = ThreadPoolExecutor(max_workers=cfg.worker_threads(), thread_name_prefix="http")
        endpoints = Endpoints(self.metrics, executor, cfg.auth_token, cfg.max_message_bytes)
        app = build_app(self.plane, self.kserve.management, self.metrics, self.ready, endpoints,
                        cfg.cors_origins)
        try:
            door = HTTPFrontDoor(app, cfg.host, cfg.http_port or 0, executor=executor,
                                 tls_cert=cfg.tls_cert, tls_key=cfg.tls_key,
                                 grace_seconds=cfg.grace_seconds)
        except OSError as exc:
            executor.shutdown(wait=False)
            raise OSError(f"cannot serve HTTP on {cfg.host}:{cfg.http_port} "
                          f"({exc.strerror or exc}); pick another --http-port or -1 for "
                          "none") from None
        self._http = door.start()
        self.http_port = door.port

    def _load(self) -> None:
        start = time.monotonic()
        try:
            self.registry.scan()
        finally:
            self._loaded.set()
            self._update_health()
        n = len(self.registry.styles())
        log.info("%d style(s) loaded and warmed up in %.2f s: %s", n, time.monotonic() - start,
                 ", ".join(m.name for m in self.registry.styles()) or "-")
        self.registry.start_watching()

    def _update_health(self) -> None:
        if self._stopped:
            return
        serving = self.ready()
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", *SERVICES):
            self.health.set(name, status)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for the first load; True if at least one style is serving."""
        self._loaded.wait(timeout)
        return self.ready()

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting RPCs, let in-flight ones finish (up to ``grace`` s), release all."""
        if self._stopped:
            return
        self._stopped = True
        self.health.enter_graceful_shutdown()
        grace = self.config.grace_seconds if grace is None else grace
        log.info("shutting down (grace %.1f s)", grace)
        if self._http is not None:
            self._http.begin_stop()
        self.server.stop(grace).wait()
        if self._http is not None:
            self._http.stop()
        self.registry.stop()
        if self._metrics_http is not None:
            self._metrics_http.stop()
        log.info("stopped")


def serve_until_signal(server: StyleServer) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully; returns exit code 0."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(0.5):
            pass
        server.stop()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return 0
