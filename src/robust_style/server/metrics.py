"""Prometheus metrics in the text exposition format (version 0.0.4), dependency-free.

A handful of counters, a gauge and histograms, rendered by :meth:`Metrics.render` and
served on ``GET /metrics`` by a small :mod:`http.server` in a daemon thread. Format:
https://prometheus.io/docs/instrumenting/exposition_formats/ (one ``# HELP`` and
``# TYPE`` line per family, cumulative ``_bucket{le=...}`` series with ``+Inf``,
``_sum`` and ``_count``).
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Metrics", "MetricsHTTPServer", "LATENCY_BUCKETS", "BATCH_BUCKETS"]

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    items = list(labels) + ([extra] if extra else [])
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _fmt_value(v: float) -> str:
    v = float(v)
    if v == float("inf"):
        return "+Inf"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


class _Family:
    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name, self.kind, self.help = name, kind, help_text
        self.values: dict[Labels, float] = {}
        self.lock = threading.Lock()

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        with self.lock:
            self.values[labels] = self.values.get(labels, 0.0) + amount

    def set(self, labels: Labels, value: float) -> None:
        with self.lock:
            self.values[labels] = value

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        with self.lock:
            for labels, v in sorted(self.values.items()):
                out.append(f"{self.name}{_fmt_labels(labels)} {_fmt_value(v)}")
        return out


class _Histogram:
    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        self.name, self.help, self.buckets = name, help_text, tuple(buckets)
        self.series: dict[Labels, list[float]] = {}  # bucket counts..., sum, count
        self.lock = threading.Lock()

    def observe(self, labels: Labels, value: float) -> None:
        with self.lock:
            s = self.series.setdefault(labels, [0.0] * (len(self.buckets) + 2))
            i = bisect.bisect_left(self.buckets, value)
            if i < len(self.buckets):
                s[i] += 1
            s[-2] += value
            s[-1] += 1

    def count(self, labels: Labels) -> float:
        with self.lock:
            return self.series.get(labels, [0.0])[-1]

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self.lock:
            for labels, s in sorted(self.series.items()):
                cum = 0.0
                for b, c in zip(self.buckets, s[:-2], strict=True):
                    cum += c
                    out.append(f"{self.name}_bucket{_fmt_labels(labels, ('le', _fmt_value(b)))} "
                               f"{_fmt_value(cum)}")
                out.append(f"{self.name}_bucket{_fmt_labels(labels, ('le', '+Inf'))} "
                           f"{_fmt_value(s[-1])}")
                out.append(f"{self.name}_sum{_fmt_labels(labels)} {_fmt_value(s[-2])}")
                out.append(f"{self.name}_count{_fmt_labels(labels)} {_fmt_value(s[-1])}")
        return out


class Metrics:
    """The server's metrics. Thread-safe; cheap enough to update on every request."""

    def __init__(self) -> None:
        p = "robust_style"
        self.requests = _Family(f"{p}_requests_total", "counter",
                                "RPCs answered, by API, method, style and gRPC status code.")
        self.expired = _Family(f"{p}_deadline_skipped_total", "counter",
                               "Queued requests not run because their deadline had passed.")
        self.reloads = _Family(f"{p}_model_loads_total", "counter",
                               "Model (re)loads by style and result (ok, failed, removed).")
        self.models = _Family(f"{p}_models_ready", "gauge", "Styles loaded and warmed up.")
        self.trt_fallbacks = _Family(f"{p}_trt_fallback_total", "counter",
                                     "Batches run on the CUDA fallback because their size "
                                     "fits no TensorRT profile, by style.")
        self.engines = _Family(f"{p}_engine_info", "gauge",
                               "Engine and precision serving each style (value 1).")
        self.latency = _Histogram(f"{p}_request_latency_seconds",
                                  "Server-side RPC latency by method and style.", LATENCY_BUCKETS)
        self.queue = _Histogram(f"{p}_queue_seconds",
                                "Time a request waited for the model, by style.", LATENCY_BUCKETS)
        self.inference = _Histogram(f"{p}_inference_seconds",
                                    "Engine run time per batch, by style.",
                                    LATENCY_BUCKETS)
        self.batch = _Histogram(f"{p}_batch_size", "Images per engine run, by style.",
                                BATCH_BUCKETS)
        self._style_known: Callable[[str], bool] | None = None

    def set_style_check(self, known: Callable[[str], bool]) -> None:
        """Label requests for styles ``known`` rejects as ``style=""``.

        Style names in requests come from clients; as labels they would let any client
        create unbounded series (Prometheus' cardinality advice:
        https://prometheus.io/docs/practices/naming/#labels).
        """
        self._style_known = known

    def request(self, api: str, method: str, style: str, code: str, seconds: float) -> None:
        if style and self._style_known is not None and not self._style_known(style):
            style = ""
        self.requests.inc((("api", api), ("method", method), ("style", style), ("code", code)))
        self.latency.observe((("method", method), ("style", style)), seconds)

    def set_engine(self, style: str, engine: str, precision: str) -> None:
        """``robust_style_engine_info{style,engine,precision} 1``, replacing the style's old one."""
        with self.engines.lock:
            for labels in [k for k in self.engines.values if k[0] == ("style", style)]:
                del self.engines.values[labels]
            self.engines.values[(("style", style), ("engine", engine),
                                 ("precision", precision))] = 1.0

    def drop_engine(self, style: str) -> None:
        with self.engines.lock:
            for labels in [k for k in self.engines.values if k[0] == ("style", style)]:
                del self.engines.values[labels]

    def render(self) -> str:
        lines: list[str] = []
        for fam in (self.requests, self.expired, self.reloads, self.models, self.trt_fallbacks,
                    self.engines, self.latency, self.queue, self.inference, self.batch):
            lines.extend(fam.render())
        return "\n".join(lines) + "\n"


class MetricsHTTPServer:
    """``GET /metrics`` on ``host:port`` (port 0 = any free port) in a daemon thread."""

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 0) -> None:
        registry = metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server API
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404, "only /metrics here")
                    return
                body = registry.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("metrics http: " + fmt, *args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics-http",
                                        daemon=True)

    def start(self) -> MetricsHTTPServer:
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", self._httpd.server_address[0], self.port)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
