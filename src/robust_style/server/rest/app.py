"""The HTTP front door: a Starlette app on uvicorn, in a thread of the gRPC server's process.

:func:`build_app` assembles the routes (KServe v2 REST in :mod:`.kserve_routes`, the image
endpoint in :mod:`.image_routes`, the web page from this package's ``static/`` folder) and
CORS for ``--cors-origin``; :class:`HTTPFrontDoor` serves it. The socket is bound in the
constructor (port 0 picks a free one, :attr:`HTTPFrontDoor.port` is the real one; a port in
use fails there, before anything starts), and uvicorn runs on its own event loop in one
thread (no signal handlers: the gRPC server's :func:`serve_until_signal` owns them). The
handlers run on a thread pool as large as the gRPC one, so both doors admit as many
requests as each other. Starlette and uvicorn are what kserve's own Python model server
uses.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from robust_style.server.dataplane import DataPlane
from robust_style.server.kserve.management import KServeManagement
from robust_style.server.metrics import Metrics
from robust_style.server.rest.codec import HEADER_LENGTH
from robust_style.server.rest.endpoint import Endpoints
from robust_style.server.rest.image_routes import ImageRoutes
from robust_style.server.rest.kserve_routes import KServeRoutes

__all__ = ["build_app", "HTTPFrontDoor", "STATIC"]

log = logging.getLogger(__name__)

#: The web page (plain HTML, CSS and JavaScript; package data, no build step).
STATIC = Path(str(resources.files("robust_style.server.rest") / "static"))


def build_app(plane: DataPlane, management: KServeManagement, metrics: Metrics,
              ready: Callable[[], bool], endpoints: Endpoints, cors_origins: tuple[str, ...] = ()
              ) -> Starlette:
    """The Starlette app of every HTTP route (``ready``: the server's readiness callable)."""

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    routes: list[BaseRoute] = [
        *KServeRoutes(plane, management, ready).routes(endpoints),
        *ImageRoutes(plane).routes(endpoints),
        Route("/", page, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = []
    if cors_origins:
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
            allow_headers=["*"], max_age=600,
            expose_headers=[HEADER_LENGTH, "X-Style", "X-Style-Version", "X-Image-Width",
                            "X-Image-Height", "X-Timing-Total-Ms", "X-Timing-Inference-Ms",
                            "X-Timing-Queue-Ms"]))
    return Starlette(routes=routes, middleware=middleware)


class HTTPFrontDoor:
    """uvicorn serving ``app`` on ``host:port`` in a background thread."""

    def __init__(self, app: Starlette, host: str, port: int, *, executor: ThreadPoolExecutor,
                 tls_cert: Path | None = None, tls_key: Path | None = None,
                 grace_seconds: float = 10.0) -> None:
        self.executor = executor
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        self.sock = socket.socket(family, kind, proto)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind(addr)
        except OSError:
            self.sock.close()
            raise
        self.sock.listen(2048)
        self.host, self.port = host, int(self.sock.getsockname()[1])
        self.tls = tls_cert is not None
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                ssl_certfile=str(tls_cert) if tls_cert else None,
                                ssl_keyfile=str(tls_key) if tls_key else None,
                                timeout_graceful_shutdown=int(max(1, grace_seconds)),
                                server_header=False)
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> HTTPFrontDoor:
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                        name="http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the HTTP server on {self.host}:{self.port} did not start "
                              "(see the log above)")
            time.sleep(0.01)
        log.info("HTTP (KServe v2 REST, /v1/styles, web page) on %s://%s:%d/",
                 "https" if self.tls else "http", self.host, self.port)
        return self

    def begin_stop(self) -> None:
        """Stop accepting; in-flight requests get the grace (:meth:`stop` waits for them)."""
        self.server.should_exit = True

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (the grace), release the threads."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join((self.server.config.timeout_graceful_shutdown or 10) + 5)
        self.sock.close()
        self.executor.shutdown(wait=False, cancel_futures=True)
