"""In-process counters of the gateway's inference answers, cheap enough for the hot path.

The data plane calls `observe` once per answer: a few dictionary updates and a bisect, no lock
(the gateway's event loop is one thread), no I/O, no allocation beyond the first request of a
series. Two views read them: the Prometheus exposition (cumulative counters and a latency
histogram per project, deployment, version and status) and the console's live charts (the last
`window` seconds, one point per second: requests, errors, 429s, p50 and p99).
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

# Latency buckets (seconds) of the histogram: sub-millisecond models to slow ones.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SAMPLES_PER_SECOND = 128  # latencies kept per second for the charts' percentiles
_VERSION_HEADER = b"x-model-version"


@dataclass(slots=True)
class Second:
    """One second of one deployment's answers."""

    at: int  # epoch second
    requests: int = 0
    errors: int = 0  # 5xx and refusals other than 429
    rejected: int = 0  # 429
    latencies: list[float] = field(default_factory=list)


@dataclass(slots=True)
class SeriesCounters:
    """Cumulative counters of one (project, deployment, version), and its deployment's seconds."""

    recent: deque[Second]
    by_status: dict[int, int] = field(default_factory=dict)
    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    latency_sum: float = 0.0
    count: int = 0


@dataclass(frozen=True)
class ChartPoint:
    at: int
    requests: int
    errors: int
    rejected: int
    p50_ms: float | None
    p99_ms: float | None


def is_error(status: int) -> bool:
    return status >= 500 or (status >= 400 and status not in (404, 429))


class InferenceMetrics:
    def __init__(self, window_seconds: int = 130) -> None:
        self.window = window_seconds
        self.series: dict[tuple[str, str, str], SeriesCounters] = {}
        self._recent: dict[tuple[str, str], deque[Second]] = {}

    def observe(
        self, project: str, deployment: str, version: str, status: int, seconds: float, now: float
    ) -> None:
        """Count one answer. `now` is the epoch time of the answer (the caller's clock read)."""
        key = (project, deployment, version)
        s = self.series.get(key)
        if s is None:
            recent = self._recent.get((project, deployment))
            if recent is None:
                recent = self._recent[(project, deployment)] = deque()
            s = self.series[key] = SeriesCounters(recent)
        s.by_status[status] = s.by_status.get(status, 0) + 1
        s.bucket_counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        s.latency_sum += seconds
        s.count += 1
        recent = s.recent
        second = int(now)
        if not recent or recent[-1].at != second:
            recent.append(Second(second))
            while recent and recent[0].at <= second - self.window:
                recent.popleft()
        point = recent[-1]
        point.requests += 1
        if status >= 400:
            if status == 429:
                point.rejected += 1
            elif is_error(status):
                point.errors += 1
        if len(point.latencies) < SAMPLES_PER_SECOND:
            point.latencies.append(seconds)

    def watch(self, send: Send, project: str, deployment: str, started: float) -> Send:
        """`send`, counting the answer it carries when its last body part goes out. `started` is
        `time.perf_counter()` when the request arrived."""
        status = 0
        version = ""

        async def counted(message: Message) -> None:
            nonlocal status, version
            if message["type"] == "http.response.start":
                status = message["status"]
                for k, v in message.get("headers", ()):
                    if k == _VERSION_HEADER:
                        version = v.decode()
            elif not message.get("more_body", False):
                self.observe(project, deployment, version, status, time.perf_counter() - started, time.time())
            await send(message)

        return counted

    def chart(self, project: str, deployment: str, now: float, seconds: int = 120) -> list[ChartPoint]:
        """One point per second of the last `seconds` (seconds without requests are zero), the
        current second excluded since it is still filling."""
        end = int(now)
        by_second = {p.at: p for p in self._recent.get((project, deployment), ())}
        points = []
        for at in range(end - seconds, end):
            p = by_second.get(at)
            if p is None:
                points.append(ChartPoint(at, 0, 0, 0, None, None))
                continue
            ms = np.asarray(p.latencies) * 1000.0 if p.latencies else None
            points.append(
                ChartPoint(
                    at,
                    p.requests,
                    p.errors,
                    p.rejected,
                    float(np.percentile(ms, 50)) if ms is not None else None,
                    float(np.percentile(ms, 99)) if ms is not None else None,
                )
            )
        return points
