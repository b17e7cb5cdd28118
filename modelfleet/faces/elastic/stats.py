"""`GET /_ml/trained_models/{ids}/_stats`: Elasticsearch's trained-model stats, built from the core
records and the inference counters nodes send with their heartbeats (at most one heartbeat old)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from modelfleet.core.placement import MemoryProfile, estimate_memory_bytes
from modelfleet.faces.elastic.deployments import ASSIGNMENT_STATES, allocation_status
from schemas.deployments import DeploymentRecord, RouteRecord
from schemas.models import ModelRecord
from schemas.nodes import NodeRecord
from schemas.stats import InferenceStats

COUNTERS = (
    "inference_count",
    "error_count",
    "timeout_count",
    "rejected_execution_count",
    "inference_cache_hit_count",
    "number_of_pending_requests",
    "peak_throughput_per_minute",
)


def _ms(at: datetime | None) -> int | None:
    return int(at.timestamp() * 1000) if at else None


def _averages(s: InferenceStats) -> dict[str, float]:
    misses = s.inference_count - s.inference_cache_hit_count
    return {
        "average_inference_time_ms": s.total_inference_time_ms / s.inference_count
        if s.inference_count
        else 0.0,
        "average_inference_time_ms_excluding_cache_hits": (
            s.total_inference_time_ms_excluding_cache_hits / misses if misses > 0 else 0.0
        ),
    }


def summed(readings: list[InferenceStats]) -> InferenceStats:
    """Counters and totals added over nodes (peaks too, as Elasticsearch sums node peaks)."""
    total = InferenceStats()
    fields = {
        name: sum(getattr(s, name) for s in readings)
        for name in InferenceStats.model_fields
        if name not in ("last_access_ms", "average_inference_time_ms_last_minute")
    }
    last = [s.last_access_ms for s in readings if s.last_access_ms is not None]
    return total.model_copy(update={**fields, "last_access_ms": max(last) if last else None})


def _node_view(
    r: RouteRecord, s: InferenceStats, node: NodeRecord | None, d: DeploymentRecord
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "node": {
            r.node_id: {
                "name": r.node_id,
                "ephemeral_id": r.node_id,
                "transport_address": node.url if node else "",
                "attributes": {},
                "roles": ["ml"],
            }
        },
        "routing_state": {"routing_state": r.routing_state.value, "reason": r.reason},
        **{name: getattr(s, name) for name in COUNTERS},
        **_averages(s),
        "inference_cache_hit_count_last_minute": s.inference_cache_hit_count_last_minute,
        "throughput_last_minute": s.throughput_last_minute,
        "average_inference_time_ms_last_minute": s.average_inference_time_ms_last_minute,
        "number_of_allocations": r.current_allocations,
        "threads_per_allocation": d.versions[0].threads_per_allocation,
        "start_time": _ms(r.updated_at),
    }
    if s.last_access_ms is not None:
        view["last_access"] = s.last_access_ms
    return view


def deployment_stats(
    d: DeploymentRecord,
    routes: list[RouteRecord],
    node_stats: Mapping[str, Mapping[str, InferenceStats]],
    nodes: Mapping[str, NodeRecord],
) -> tuple[dict[str, Any], InferenceStats]:
    v = d.versions[0]
    per_node = []
    readings = []
    for r in sorted(routes, key=lambda r: r.node_id):
        s = node_stats.get(r.node_id, {}).get(f"{d.uid}/{r.version_id}") or InferenceStats()
        readings.append(s)
        per_node.append(_node_view(r, s, nodes.get(r.node_id), d))
    total = summed(readings)
    view: dict[str, Any] = {
        "deployment_id": d.deployment_id,
        "model_id": v.model_id,
        "threads_per_allocation": v.threads_per_allocation,
        "number_of_allocations": v.allocations,
        "queue_capacity": d.queue_capacity,
        "cache_size": f"{v.cache_size_bytes if v.cache_size_bytes is not None else v.model_bytes}b",
        "priority": d.priority.value,
        "state": ASSIGNMENT_STATES[d.state],
        "allocation_status": allocation_status(d, routes),
        "start_time": _ms(d.created_at),
        **{name: getattr(total, name) for name in COUNTERS},
        **_averages(total),
        "nodes": per_node,
    }
    if d.reason:
        view["reason"] = d.reason
    if d.face.get("adaptive_allocations"):
        view["adaptive_allocations"] = d.face["adaptive_allocations"]
    return view, total


def model_stats(
    model: ModelRecord,
    deployments: list[tuple[DeploymentRecord, list[RouteRecord]]],
    node_stats: Mapping[str, Mapping[str, InferenceStats]],
    nodes: Mapping[str, NodeRecord],
    now: datetime,
) -> list[dict[str, Any]]:
    """One entry per deployment of the model, or one without deployment stats."""
    size = int((model.face.get("definition") or {}).get("size") or model.size_bytes)
    base: dict[str, Any] = {
        "model_id": model.model_id,
        "model_size_stats": {
            "model_size_bytes": size,
            "required_native_memory_bytes": estimate_memory_bytes(MemoryProfile(model_bytes=size), 1),
        },
        "pipeline_count": 0,
    }
    if not deployments:
        return [{**base, "inference_stats": _inference_stats(InferenceStats(), now)}]
    out = []
    for d, routes in deployments:
        view, total = deployment_stats(d, routes, node_stats, nodes)
        out.append({**base, "inference_stats": _inference_stats(total, now), "deployment_stats": view})
    return out


def _inference_stats(total: InferenceStats, now: datetime) -> dict[str, Any]:
    return {
        "failure_count": total.error_count,
        "inference_count": total.inference_count,
        "cache_miss_count": total.inference_count - total.inference_cache_hit_count,
        "missing_all_fields_count": 0,
        "timestamp": _ms(now),
    }
