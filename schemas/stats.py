"""Inference counters a node keeps per deployment version (Elasticsearch's per-node stats).

Nodes send them with every heartbeat; the control plane keeps the latest copy per node and the
stats APIs and the adaptive-allocations policy read them. Counters only grow while a route lives,
so a reader takes differences between two readings. Averages are derived from the totals; the
latency histogram gives the distribution (a canary's gate judges its p95).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from modelfleet.core.latency import BUCKETS, merge
from schemas.common import Record


class LatencyHistogram(Record):
    """Cumulative per-bucket counts of the latencies of successful requests, in the fixed buckets
    of `modelfleet.core.latency` (trailing empty buckets left out). Like the counters it only
    grows while a route lives, so a reader differences two readings per node (a bucket that went
    down means the node restarted), merges nodes bucket-wise, then reads a quantile.

    `+` merges (and `0 + h` is `h`), so code that sums every stats field over nodes keeps working.
    """

    counts: list[int] = Field(default_factory=list, max_length=BUCKETS)

    @field_validator("counts")
    @classmethod
    def _non_negative(cls, counts: list[int]) -> list[int]:
        if any(n < 0 for n in counts):
            raise ValueError("bucket counts cannot be negative")
        return counts

    def __add__(self, other: object) -> LatencyHistogram:
        if isinstance(other, LatencyHistogram):
            return LatencyHistogram(counts=list(merge([self.counts, other.counts])))
        if other == 0:
            return self
        return NotImplemented

    __radd__ = __add__


class InferenceStats(Record):
    inference_count: int = Field(default=0, ge=0)  # successful inferences (cache hits included)
    error_count: int = Field(default=0, ge=0)
    timeout_count: int = Field(default=0, ge=0)
    rejected_execution_count: int = Field(default=0, ge=0)  # queue full
    inference_cache_hit_count: int = Field(default=0, ge=0)
    inference_cache_hit_count_last_minute: int = Field(default=0, ge=0)
    number_of_pending_requests: int = Field(default=0, ge=0)  # queued + running now
    total_inference_time_ms: float = Field(default=0.0, ge=0)  # includes cache hits
    total_inference_time_ms_excluding_cache_hits: float = Field(default=0.0, ge=0)
    peak_throughput_per_minute: int = Field(default=0, ge=0)
    throughput_last_minute: int = Field(default=0, ge=0)
    average_inference_time_ms_last_minute: float = Field(default=0.0, ge=0)
    last_access_ms: int | None = None  # epoch milliseconds of the last request
    batches: int = Field(default=0, ge=0)  # model runs (a batch of n requests counts once)
    batched_requests: int = Field(default=0, ge=0)  # requests that went through those runs
    # successful requests by latency (the model run that answered them, or the cache lookup)
    latency_histogram: LatencyHistogram = Field(default_factory=LatencyHistogram)
