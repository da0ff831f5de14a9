"""The server's Prometheus metrics, kept with the maintained ``prometheus-client``.

Each :class:`Metrics` has its own :class:`prometheus_client.CollectorRegistry` (several
servers in one process, as in the tests, do not share series) and is served on
``GET /metrics`` by ``prometheus_client.start_http_server`` in a daemon thread (text format
0.0.4, or OpenMetrics when the scraper asks for it). Metric names and labels are part of
the interface (docs/serving.md); the small wrappers below take labels as
``(("name", "value"), ...)`` pairs and expose the current values for tests and tools.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics", "MetricsHTTPServer", "LATENCY_BUCKETS", "BATCH_BUCKETS"]

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

Labels = tuple[tuple[str, str], ...]

# ``*_created`` series (one per label set, the time it first appeared) would double the
# exposition for no use here; process-wide switch of prometheus-client.
prometheus_client.disable_created_metrics()


class _Metric:
    """A prometheus-client metric addressed with label pairs."""

    def __init__(self, metric: Counter | Gauge | Histogram, labelnames: Sequence[str]) -> None:
        self.metric, self.labelnames = metric, tuple(labelnames)

    def _child(self, labels: Labels):
        if not self.labelnames:
            return self.metric
        values = dict(labels)
        return self.metric.labels(*(values[n] for n in self.labelnames))

    def _samples(self, suffix: str) -> dict[Labels, float]:
        out: dict[Labels, float] = {}
        for family in self.metric.collect():
            for s in family.samples:
                if s.name.endswith(suffix):
                    out[tuple((n, s.labels[n]) for n in self.labelnames)] = s.value
        return out

    def remove(self, labels: Labels) -> None:
        values = dict(labels)
        with contextlib.suppress(KeyError):  # never set
            self.metric.remove(*(values[n] for n in self.labelnames))


class _Counter(_Metric):
    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        self._child(labels).inc(amount)

    @property
    def values(self) -> dict[Labels, float]:
        return self._samples("_total")


class _Gauge(_Metric):
    def set(self, labels: Labels, value: float) -> None:
        self._child(labels).set(value)

    @property
    def values(self) -> dict[Labels, float]:
        return self._samples(next(iter(self.metric.describe())).name)  # the sample's own name


class _Histogram(_Metric):
    def observe(self, labels: Labels, value: float) -> None:
        self._child(labels).observe(value)

    def count(self, labels: Labels) -> float:
        """Observations so far for ``labels`` (0 if none)."""
        return self.series.get(tuple(labels), (0.0, 0.0))[1]

    @property
    def series(self) -> dict[Labels, tuple[float, float]]:
        """(sum, count) per label set."""
        sums, counts = self._samples("_sum"), self._samples("_count")
        return {k: (sums[k], counts[k]) for k in counts}


class Metrics:
    """The server's metrics. Thread-safe; cheap enough to update on every request."""

    def __init__(self) -> None:
        p = "robust_style"
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        def counter(name: str, doc: str, labels: Sequence[str]) -> _Counter:
            return _Counter(Counter(name, doc, labels, registry=r), labels)

        def gauge(name: str, doc: str, labels: Sequence[str]) -> _Gauge:
            return _Gauge(Gauge(name, doc, labels, registry=r), labels)

        def histogram(name: str, doc: str, labels: Sequence[str],
                      buckets: Sequence[float]) -> _Histogram:
            return _Histogram(Histogram(name, doc, labels, registry=r, buckets=buckets), labels)

        self.requests = counter(f"{p}_requests_total",
                                "RPCs answered, by API, method, style and gRPC status code.",
                                ("api", "method", "style", "code"))
        self.expired = counter(f"{p}_deadline_skipped_total",
                               "Queued requests not run because their deadline had passed.",
                               ("style",))
        self.reloads = counter(f"{p}_model_loads_total",
                               "Model (re)loads by style and result (ok, failed, removed).",
                               ("style", "result"))
        self.models = gauge(f"{p}_models_ready", "Styles loaded and warmed up.", ())
        self.trt_fallbacks = counter(f"{p}_trt_fallback_total",
                                     "Batches run on the CUDA fallback because their size "
                                     "fits no TensorRT profile, by style.", ("style",))
        self.engines = gauge(f"{p}_engine_info",
                             "Engine and precision serving each style (value 1).",
                             ("style", "engine", "precision"))
        self.latency = histogram(f"{p}_request_latency_seconds",
                                 "Server-side RPC latency by method and style.",
                                 ("method", "style"), LATENCY_BUCKETS)
        self.queue = histogram(f"{p}_queue_seconds",
                               "Time a request waited for the model, by style.", ("style",),
                               LATENCY_BUCKETS)
        self.inference = histogram(f"{p}_inference_seconds",
                                   "Engine run time per batch, by style.", ("style",),
                                   LATENCY_BUCKETS)
        self.batch = histogram(f"{p}_batch_size", "Images per engine run, by style.",
                               ("style",), BATCH_BUCKETS)
        self._engine_of: dict[str, Labels] = {}
        self._engine_lock = threading.Lock()
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
        labels = (("style", style), ("engine", engine), ("precision", precision))
        with self._engine_lock:
            old = self._engine_of.pop(style, None)
            if old is not None:
                self.engines.remove(old)
            self.engines.set(labels, 1.0)
            self._engine_of[style] = labels

    def drop_engine(self, style: str) -> None:
        with self._engine_lock:
            old = self._engine_of.pop(style, None)
            if old is not None:
                self.engines.remove(old)

    def render(self) -> str:
        """The exposition text (format 0.0.4)."""
        return prometheus_client.generate_latest(self.registry).decode()


class MetricsHTTPServer:
    """``GET /metrics`` on ``host:port`` (port 0 = any free port) in a daemon thread."""

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 0) -> None:
        self._httpd, self._thread = prometheus_client.start_http_server(
            port, addr=host, registry=metrics.registry)
        self._host = host
        self.port = int(self._httpd.server_port)

    def start(self) -> MetricsHTTPServer:
        """Serving started in the constructor (prometheus-client's own thread)."""
        log.info("metrics on http://%s:%d/metrics", self._host, self.port)
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
