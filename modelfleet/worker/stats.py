"""Inference counters of one loaded deployment version, reported in every heartbeat.

What is counted (the fields of `schemas.stats.InferenceStats`):

* *inference time* is the time an allocation spent on a request: a model run of n batched
  requests adds its whole duration once, shared by its requests, so `throughput * average time`
  is the number of busy allocations (what an autoscaler needs). Queue waiting is not included;
  `number_of_pending_requests` (queued + running, read from the batcher) shows the backlog.
* a cache hit counts as a successful inference whose time is the lookup's; it is excluded from
  `total_inference_time_ms_excluding_cache_hits`.
* "last minute" figures are a sliding minute of one-second buckets (so they do not drop to zero
  at a minute boundary); `peak_throughput_per_minute` is the highest such count seen.

* the last `RECENT_RUNS` model runs are kept as (requests, milliseconds), so a reader can see
  the batch sizes formed and how long each took (the distribution, not just the average).
* a cumulative latency histogram (`core.latency`'s fixed buckets) counts each successful
  request at the duration of the model run that answered it (or of its cache lookup), so the
  control plane can difference two heartbeats and read a p95 (a canary's gate). Recording is one
  `bisect` on a fixed tuple and one increment of a preallocated list: no allocation per request.
  Queue waiting is not included (as for the inference time).

The clock (epoch seconds) is injected so tests can drive the buckets. Recording takes one short
lock, never held across a model run.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from modelfleet.core.latency import BOUNDS_MS, BUCKETS, compact
from schemas.stats import InferenceStats, LatencyHistogram

WINDOW_SECONDS = 60
RECENT_RUNS = 1024


@dataclass(slots=True)
class _Window:
    """Per-second buckets over the last minute, with their running sums."""

    count: list[int] = field(default_factory=lambda: [0] * WINDOW_SECONDS)
    time_ms: list[float] = field(default_factory=lambda: [0.0] * WINDOW_SECONDS)
    hits: list[int] = field(default_factory=lambda: [0] * WINDOW_SECONDS)
    second: int = 0  # the newest bucket's second
    sum_count: int = 0
    sum_time_ms: float = 0.0
    sum_hits: int = 0

    def advance(self, second: int) -> None:
        """Empty the buckets of the seconds that passed (a clock going back changes nothing)."""
        if second <= self.second:
            return
        steps = min(second - self.second, WINDOW_SECONDS)
        for s in range(self.second + 1, self.second + 1 + steps):
            i = s % WINDOW_SECONDS
            self.sum_count -= self.count[i]
            self.sum_time_ms -= self.time_ms[i]
            self.sum_hits -= self.hits[i]
            self.count[i], self.time_ms[i], self.hits[i] = 0, 0.0, 0
        self.second = second
        if self.sum_count == 0:
            self.sum_time_ms = 0.0  # no float drift left behind by an emptied window

    def add(self, count: int, time_ms: float, hits: int) -> None:
        i = self.second % WINDOW_SECONDS
        self.count[i] += count
        self.time_ms[i] += time_ms
        self.hits[i] += hits
        self.sum_count += count
        self.sum_time_ms += time_ms
        self.sum_hits += hits


class DeploymentStats:
    """Counters of one deployment version on this node; every method is thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._window = _Window(second=int(clock()))
        self._inferences = 0
        self._errors = 0
        self._timeouts = 0
        self._rejected = 0
        self._hits = 0
        self._time_ms = 0.0
        self._time_ms_no_hits = 0.0
        self._peak = 0
        self._last_access_ms: int | None = None
        self._batches = 0
        self._batched_requests = 0
        self._recent_runs: deque[tuple[int, float]] = deque(maxlen=RECENT_RUNS)
        self._latency = [0] * BUCKETS  # cumulative, per `core.latency` bucket

    def record_access(self) -> None:
        """A request arrived (whatever becomes of it)."""
        self._last_access_ms = int(self._clock() * 1000)  # one store: atomic under the GIL

    def record_run(self, succeeded: int, failed: int, elapsed_ms: float) -> None:
        """One model run of `succeeded + failed` requests took `elapsed_ms`."""
        total = succeeded + failed
        share = elapsed_ms * succeeded / total if total else 0.0
        now = self._clock()
        with self._lock:
            self._inferences += succeeded
            self._errors += failed
            self._time_ms += share
            self._time_ms_no_hits += share
            self._batches += 1
            self._batched_requests += total
            self._recent_runs.append((total, elapsed_ms))
            self._latency[bisect_left(BOUNDS_MS, elapsed_ms)] += succeeded
            w = self._window
            w.advance(int(now))
            w.add(succeeded, share, 0)
            if w.sum_count > self._peak:
                self._peak = w.sum_count

    def record_cache_hit(self, elapsed_ms: float) -> None:
        """A request answered from the inference cache in `elapsed_ms` (no model run)."""
        now = self._clock()
        with self._lock:
            self._inferences += 1
            self._hits += 1
            self._time_ms += elapsed_ms
            self._last_access_ms = int(now * 1000)
            self._latency[bisect_left(BOUNDS_MS, elapsed_ms)] += 1
            w = self._window
            w.advance(int(now))
            w.add(1, elapsed_ms, 1)
            if w.sum_count > self._peak:
                self._peak = w.sum_count

    def record_error(self, count: int = 1) -> None:
        """Requests that failed before reaching the model (undecodable, wrong signature)."""
        with self._lock:
            self._errors += count

    def record_timeout(self, count: int = 1) -> None:
        with self._lock:
            self._timeouts += count

    def record_rejected(self) -> None:
        """The queue was full."""
        with self._lock:
            self._rejected += 1

    def recent_runs(self) -> list[tuple[int, float]]:
        """The last model runs, oldest first: (requests in the run, milliseconds it took)."""
        with self._lock:
            return list(self._recent_runs)

    def snapshot(self, pending: int = 0) -> InferenceStats:
        now = self._clock()
        with self._lock:
            w = self._window
            w.advance(int(now))
            return InferenceStats(
                inference_count=self._inferences,
                error_count=self._errors,
                timeout_count=self._timeouts,
                rejected_execution_count=self._rejected,
                inference_cache_hit_count=self._hits,
                inference_cache_hit_count_last_minute=w.sum_hits,
                number_of_pending_requests=max(0, pending),
                total_inference_time_ms=self._time_ms,
                total_inference_time_ms_excluding_cache_hits=self._time_ms_no_hits,
                peak_throughput_per_minute=self._peak,
                throughput_last_minute=w.sum_count,
                average_inference_time_ms_last_minute=w.sum_time_ms / w.sum_count if w.sum_count else 0.0,
                last_access_ms=self._last_access_ms,
                batches=self._batches,
                batched_requests=self._batched_requests,
                latency_histogram=LatencyHistogram(counts=list(compact(self._latency))),
            )
