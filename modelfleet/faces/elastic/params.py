"""Query parameters and bodies of `_start` / `_update`, read into the face's typed values.

Parsing (byte sizes, time values), validation (Elasticsearch's messages) and clamping to the
nodes' hardware are pure rules in `modelfleet.core.ml_params`; this module only gathers the
values from the query string and the body, where Elasticsearch accepts either.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modelfleet.core import ml_params
from modelfleet.core.placement import Priority
from modelfleet.faces.elastic.deployments import StartParams
from modelfleet.faces.elastic.errors import EsBadRequest, validation_failed
from schemas.elastic import AdaptiveAllocations, StartBody, UpdateBody

DEFAULT_TIMEOUT = "30s"


def parse_bool(query: Mapping[str, str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if raw in ("true", "false"):
        return raw == "true"
    raise EsBadRequest(f"Failed to parse value [{raw}] as only [true] or [false] are allowed.")


def _int(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise EsBadRequest(f"Failed to parse int parameter [{name}] with value [{raw}]") from None


def _pick(query: Mapping[str, str], body: StartBody | None, name: str) -> str | None:
    from_body = getattr(body, name, None) if body is not None else None
    if from_body is not None:
        return str(from_body)
    return query.get(name) or None


def start_params(
    model_id: str, query: Mapping[str, str], body: StartBody | None, node_processors: Sequence[int]
) -> StartParams:
    known = {
        "cache_size", "deployment_id", "number_of_allocations", "priority", "queue_capacity",
        "threads_per_allocation", "timeout", "wait_for", "error_trace", "filter_path", "human", "pretty",
    }  # fmt: skip
    unknown = sorted(set(query) - known)
    if unknown:
        raise EsBadRequest(f"request [_start] contains unrecognized parameter: [{unknown[0]}]")
    allocations_raw = _pick(query, body, "number_of_allocations")
    threads_raw = _pick(query, body, "threads_per_allocation")
    queue_raw = _pick(query, body, "queue_capacity")
    ints = {}
    for name, raw in (
        ("number_of_allocations", allocations_raw),
        ("threads_per_allocation", threads_raw),
        ("queue_capacity", queue_raw),
    ):
        ints[name] = _int({name: raw} if raw is not None else {}, name)
    try:
        timeout = ml_params.parse_time_seconds(_pick(query, body, "timeout") or DEFAULT_TIMEOUT, "timeout")
        cache_raw: str | int | None = body.cache_size if body is not None else None
        if cache_raw is None:
            cache_raw = query.get("cache_size") or None
        cache = ml_params.parse_byte_size(cache_raw, "cache_size") if cache_raw is not None else None
    except ml_params.ParamError as e:
        raise EsBadRequest(str(e), e.error_type) from None
    adaptive = body.adaptive_allocations if body is not None else None
    start = ml_params.StartRequest(
        number_of_allocations=ints["number_of_allocations"],
        threads_per_allocation=ints["threads_per_allocation"],
        queue_capacity=ints["queue_capacity"],
        priority=_pick(query, body, "priority") or "normal",
        timeout_seconds=timeout,
        wait_for=_pick(query, body, "wait_for") or "started",
        adaptive=_adaptive(adaptive),
    )
    problems = ml_params.validate_start(start)
    if problems:
        raise validation_failed(problems)
    resolved = ml_params.resolve_start(start, node_processors)
    return StartParams(
        deployment_id=_pick(query, body, "deployment_id") or model_id,
        number_of_allocations=resolved.number_of_allocations,
        threads_per_allocation=resolved.threads_per_allocation,
        queue_capacity=resolved.queue_capacity,
        priority=Priority(resolved.priority),
        cache_size_bytes=cache,
        timeout_seconds=timeout,
        wait_for=start.wait_for,
        adaptive=adaptive,
        notes=tuple(resolved.notes),
    )


def _adaptive(a: AdaptiveAllocations | None) -> ml_params.AdaptiveSettings | None:
    if a is None:
        return None
    return ml_params.AdaptiveSettings(
        enabled=a.enabled,
        min_number_of_allocations=a.min_number_of_allocations,
        max_number_of_allocations=a.max_number_of_allocations,
    )


def update_params(
    query: Mapping[str, str], body: UpdateBody | None
) -> tuple[int | None, AdaptiveAllocations | None]:
    allocations = body.number_of_allocations if body and body.number_of_allocations is not None else None
    if allocations is None:
        allocations = _int(query, "number_of_allocations")
    adaptive = body.adaptive_allocations if body is not None else None
    problems = ml_params.validate_update(allocations, _adaptive(adaptive))
    if problems:
        raise validation_failed(problems)
    if allocations is None and adaptive is None:
        raise validation_failed(["[number_of_allocations] or [adaptive_allocations] is required"])
    return allocations, adaptive
