"""Inference counters a node keeps per deployment version (Elasticsearch's per-node stats).

Nodes send them with every heartbeat; the control plane keeps the latest copy per node and the
stats APIs and the adaptive-allocations policy read them. Counters only grow while a route lives,
so a reader takes differences between two readings. Averages are derived from the totals.
"""

from __future__ import annotations

from pydantic import Field

from schemas.common import Record


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
