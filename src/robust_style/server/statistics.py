"""Per-model inference statistics as Triton keeps them (KServe ``ModelStatistics``).

Field meanings follow Triton's ``grpc_service.proto`` and its statistics extension
(triton-inference-server/server ``docs/protocol/extension_statistics.md``):

* ``inference_count``: images inferred by successful requests (a batch of 4 counts 4);
* ``execution_count``: model executions; one dynamic batch of several requests counts 1;
* ``success``/``fail``: requests and their total time in the server;
* ``queue``: time a successful request waited for the model;
* ``compute_input``/``compute_infer``/``compute_output``: per successful request, the time
  to prepare its input (KServe: tensor parsing; own API: image decoding), to run the model
  (the whole batch's run, as Triton counts it) and to build its output (KServe: the output
  tensor; own API: post-processing and image encoding). The three counts are always equal,
  which perf_analyzer checks ("Server side statistics compute counts must be the same").
* ``batch_stats``: per executed batch size, the executions and their input assembly and
  run times (output slicing is a view: 0 ns).

One :class:`InferenceStatistics` belongs to one loaded model version; a reload starts a
new one, as Triton's statistics are per version.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

__all__ = ["Duration", "InferenceStatistics", "StatisticsSnapshot"]


@dataclass
class Duration:
    """A cumulative count and duration (Triton's ``StatisticDuration``)."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += max(0, int(ns))


@dataclass
class StatisticsSnapshot:
    """A consistent copy of one model version's statistics."""

    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    #: batch size -> (input, infer, output) durations of its executions
    batches: dict[int, tuple[Duration, Duration, Duration]] = field(default_factory=dict)


def _copy(d: Duration) -> Duration:
    return Duration(d.count, d.ns)


class InferenceStatistics:
    """Thread-safe counters of one model version; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._s = StatisticsSnapshot()

    def executed(self, batch_size: int, input_ns: int, infer_ns: int) -> None:
        """One model execution of ``batch_size`` images (called by the batcher)."""
        with self._lock:
            self._s.execution_count += 1
            durations = self._s.batches.setdefault(batch_size,
                                                   (Duration(), Duration(), Duration()))
            durations[0].add(input_ns)
            durations[1].add(infer_ns)
            durations[2].add(0)

    def succeeded(self, images: int, total_ns: int, queue_ns: int, input_ns: int,
                  infer_ns: int, output_ns: int) -> None:
        """One successful request of ``images`` images and where its time went."""
        with self._lock:
            s = self._s
            s.inference_count += images
            s.last_inference_ms = int(time.time() * 1000)
            s.success.add(total_ns)
            s.queue.add(queue_ns)
            s.compute_input.add(input_ns)
            s.compute_infer.add(infer_ns)
            s.compute_output.add(output_ns)

    def failed(self, total_ns: int) -> None:
        """One request for this model that failed (bad input, deadline, ...)."""
        with self._lock:
            self._s.fail.add(total_ns)
            self._s.last_inference_ms = int(time.time() * 1000)

    def snapshot(self) -> StatisticsSnapshot:
        with self._lock:
            s = self._s
            copy = StatisticsSnapshot(
                s.last_inference_ms, s.inference_count, s.execution_count,
                _copy(s.success), _copy(s.fail), _copy(s.queue), _copy(s.compute_input),
                _copy(s.compute_infer), _copy(s.compute_output))
            copy.batches = {b: (_copy(i), _copy(n), _copy(o))
                            for b, (i, n, o) in s.batches.items()}
            return copy
