"""Dynamic batching with a bounded queue, one worker thread per style.

Requests for one style wait in a FIFO queue. The worker takes the oldest request and, if
batching is on (``max_batch > 1``), gathers further requests with the *same height, width
and model version* for up to ``max_delay_ms`` (or until ``max_batch`` images), runs them
in one ``session.run`` and hands each request its slice. This is the scheme of Triton's
dynamic batcher. On a CPU one request at a time (``max_batch=1``) is as fast and gives the
lowest latency, so the server turns batching on by default only on a GPU.

Back-pressure: when ``max_queue`` requests are already waiting, :meth:`Batcher.submit`
raises :class:`QueueFull` at once (the server answers RESOURCE_EXHAUSTED) instead of
letting latency grow without bound. Requests whose deadline has passed (or whose client
has gone) when they reach the front are dropped without running (:class:`DeadlineExpired`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from robust_style.server.metrics import Metrics

__all__ = ["BatchConfig", "BatchResult", "Batcher", "QueueFull", "DeadlineExpired", "Runnable",
           "StyleRemoved"]

log = logging.getLogger(__name__)


class Runnable(Protocol):
    def run(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class BatchConfig:
    """``max_batch`` images per run (1 = no batching), gather window, queue bound."""

    max_batch: int = 1
    max_delay_ms: float = 2.0
    max_queue: int = 64


@dataclass(frozen=True)
class BatchResult:
    output: np.ndarray
    queue_seconds: float
    inference_seconds: float
    batch_size: int


class QueueFull(RuntimeError):
    """Too many requests are waiting for this style."""


class StyleRemoved(RuntimeError):
    """The style was removed (its file deleted) while the request was on its way."""


class DeadlineExpired(RuntimeError):
    """The request's deadline passed (or its client left) before it could run."""


class _Item:
    __slots__ = ("model", "array", "deadline", "alive", "future", "enqueued")

    def __init__(self, model: Runnable, array: np.ndarray, deadline: float | None,
                 alive: Callable[[], bool] | None) -> None:
        self.model, self.array, self.deadline, self.alive = model, array, deadline, alive
        self.future: Future[BatchResult] = Future()
        self.enqueued = time.monotonic()

    def compatible(self, other: _Item) -> bool:
        return self.model is other.model and self.array.shape[1:] == other.array.shape[1:]


class Batcher:
    """Queue and worker thread of one style."""

    def __init__(self, style: str, config: BatchConfig, metrics: Metrics | None = None) -> None:
        self.style, self.config, self.metrics = style, config, metrics
        self._items: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._removed = False
        self._running = 0
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{style}", daemon=True)
        self._thread.start()

    def submit(self, model: Runnable, array: np.ndarray, deadline: float | None = None,
               alive: Callable[[], bool] | None = None) -> Future[BatchResult]:
        """Queue ``array`` (``NxHxWx3 uint8``) for ``model``; ``deadline`` is monotonic time."""
        item = _Item(model, array, deadline, alive)
        with self._cond:
            if self._removed:
                raise StyleRemoved(f"style {self.style!r} was removed; list the styles again")
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if len(self._items) >= self.config.max_queue:
                raise QueueFull(f"{len(self._items)} requests already queued for style "
                                f"{self.style!r} (limit {self.config.max_queue}); retry later")
            self._items.append(item)
            self._cond.notify()
        return item.future

    def queued(self) -> int:
        """Requests waiting (not counting the batch being run)."""
        with self._cond:
            return len(self._items)

    def running(self) -> int:
        """Requests in the batch being run now."""
        return self._running

    def stop(self, wait: bool = True, removed: bool = False) -> None:
        """Run what is queued, then end the worker.

        ``removed``: the style's file was deleted, so late requests get :class:`StyleRemoved`
        (NOT_FOUND) rather than the shutdown's :class:`QueueFull`.
        """
        with self._cond:
            self._stopping = True
            self._removed = self._removed or removed
            self._cond.notify_all()
        if wait and self._thread is not threading.current_thread():
            self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._stopping:
                    self._cond.wait()
                if not self._items:
                    return
                batch = self._gather()
                self._running = len(batch)
            try:
                self._run(batch)
            finally:
                self._running = 0

    def _gather(self) -> list[_Item]:
        first = self._items.popleft()
        batch, n = [first], first.array.shape[0]
        limit = self.config.max_batch
        if limit <= 1 or n >= limit:
            return batch
        until = time.monotonic() + self.config.max_delay_ms / 1000.0
        while n < limit:
            for item in list(self._items):
                size = item.array.shape[0]
                if item.compatible(first) and n + size <= limit:
                    self._items.remove(item)
                    batch.append(item)
                    n += size
            remaining = until - time.monotonic()
            if n >= limit or remaining <= 0 or self._stopping:
                break
            self._cond.wait(remaining)
        return batch

    def _run(self, batch: list[_Item]) -> None:
        now = time.monotonic()
        live = []
        for item in batch:
            if not item.future.set_running_or_notify_cancel():
                continue
            gone = item.alive is not None and not item.alive()
            if (item.deadline is not None and now >= item.deadline) or gone:
                if self.metrics:
                    self.metrics.expired.inc((("style", self.style),))
                item.future.set_exception(DeadlineExpired(
                    "the request's deadline passed before it reached the model"
                    if not gone else "the client cancelled the request"))
                continue
            live.append(item)
        if not live:
            return
        arrays = [it.array for it in live]
        try:
            start = time.monotonic()
            data = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
            assembled = time.monotonic()
            out = live[0].model.run(data)
            elapsed = time.monotonic() - start
        except Exception as exc:
            log.exception("style %s: session.run failed for a batch of %d", self.style,
                          sum(a.shape[0] for a in arrays))
            for item in live:
                item.future.set_exception(exc)
            return
        total = int(data.shape[0])
        # Triton-style per-version statistics (robust_style.server.statistics), if the
        # model keeps them: one execution of ``total`` images.
        stats = getattr(live[0].model, "stats", None)
        if stats is not None:
            stats.executed(total, int((assembled - start) * 1e9),
                           int((start + elapsed - assembled) * 1e9))
        if self.metrics:
            self.metrics.inference.observe((("style", self.style),), elapsed)
            self.metrics.batch.observe((("style", self.style),), total)
        offset = 0
        for item in live:
            size = item.array.shape[0]
            waited = start - item.enqueued
            if self.metrics:
                self.metrics.queue.observe((("style", self.style),), waited)
            item.future.set_result(BatchResult(out[offset:offset + size], waited, elapsed, total))
            offset += size
