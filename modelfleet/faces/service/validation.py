"""Every rule of the seed's service request, each answered with its own code (errors.py).

`validate_create` turns a parsed `ServiceCreate` into a `ServicePlan`: weights as integers,
specifications resolved to cpu/memory (the catalogue below), pools resolved (a config-level pool
wins over the service-level one), rolling-upgrade settings as numbers. It needs only what it is
given (known pools, the project's instance maximum), so the face can run it before any write.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from modelfleet.core.errors import ValidationFailed
from modelfleet.core.rollout import Policy, Strategy, linear_steps
from modelfleet.faces.service.errors import ServiceError, bad
from schemas.services import (
    InferType,
    LogVolume,
    PersistentVolume,
    RolloutRequest,
    ServiceAdditionalProperties,
    ServiceConfig,
    ServiceCreate,
    TimeUnit,
)


@dataclass(frozen=True)
class Size:
    cpu: float
    memory_mb: int
    gpu: float = 0.0
    ascend: int = 0

    @property
    def threads(self) -> int:
        """cpu cores -> threads per instance (an instance is one allocation)."""
        return max(1, math.ceil(self.cpu))

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb * 1024 * 1024


# The specification catalogue. Memory is sized for one machine running the local platform
# (ModelArts' public 2u flavour has 8 GiB); accelerators are not offered here.
SPECIFICATIONS: dict[str, Size] = {
    "modelarts.vm.cpu.2u": Size(2, 4096),
    "modelarts.vm.cpu.4u": Size(4, 8192),
    "modelarts.vm.cpu.8u": Size(8, 16384),
    "modelarts.vm.gpu.p4": Size(8, 32768, gpu=1),
    "modelarts.vm.ai1.a310": Size(8, 32768, ascend=1),
    "modelsarts.vm.ai1.a310": Size(8, 32768, ascend=1),  # the seed's own spelling
}
CUSTOM = "custom"
DESCRIPTION_FORBIDDEN = set("!<>=&\"'")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
SMN_EVENTS = frozenset({1, 3, 7, 11})
MAX_DEPLOY_TIMEOUT = 86_400
MAX_GRACE_SECONDS = 3_600


@dataclass(frozen=True)
class VersionPlan:
    index: int
    model_id: str
    weight: int
    instance_count: int
    specification: str
    size: Size
    pool: str | None
    envs: dict[str, str]
    deploy_timeout_seconds: int | None
    max_surge: float
    max_unavailable: float
    grace_seconds: int | None
    raw: dict[str, Any]  # the config entry as given (kept in the service's face record)


@dataclass(frozen=True)
class ServicePlan:
    name: str
    infer_type: InferType
    versions: list[VersionPlan]
    stop_after: tuple[str, int] | None  # (time_unit, duration)
    topic_urn: str | None
    events: frozenset[int]
    raw: dict[str, Any]
    pools: frozenset[str | None] = field(default_factory=frozenset)


# Pydantic's errors (wrong type, missing, unknown field) name a field; the field names its code.
FIELD_CODES: dict[str, str] = {
    "service_name": "ModelArts.3001",
    "description": "ModelArts.3002",
    "infer_type": "ModelArts.3003",
    "config": "ModelArts.3006",
    "weight": "ModelArts.3007",
    "specification": "ModelArts.3010",
    "custom_spec": "ModelArts.3012",
    "cpu": "ModelArts.3012",
    "memory": "ModelArts.3012",
    "gpu_p4": "ModelArts.3012",
    "ascend_a310": "ModelArts.3012",
    "instance_count": "ModelArts.3014",
    "deploy_timeout_in_seconds": "ModelArts.3015",
    "schedule": "ModelArts.3016",
    "duration": "ModelArts.3016",
    "time_unit": "ModelArts.3016",
    "smn_notification": "ModelArts.3017",
    "topic_urn": "ModelArts.3017",
    "events": "ModelArts.3018",
    "log_volume": "ModelArts.3019",
    "persistent_volumes": "ModelArts.3019",
    "max_surge": "ModelArts.3020",
    "max_unavailable": "ModelArts.3020",
    "envs": "ModelArts.3023",
    "log_report_channels": "ModelArts.3024",
    "rollout": "ModelArts.3025",
    "termination_grace_period_seconds": "ModelArts.3027",
    "nodes": "ModelArts.3022",
}


def from_pydantic(e: ValidationError) -> ServiceError:
    """The first problem, with the code of the innermost field that names one."""
    err = e.errors()[0]
    loc = [p for p in err.get("loc", ()) if isinstance(p, str)]
    where = ".".join(str(p) for p in err.get("loc", ())) or "body"
    if err.get("type") == "extra_forbidden":
        return bad("ModelArts.0102", f"unknown field [{where}]")
    if err.get("type") == "missing":
        return bad("ModelArts.0102", f"[{where}] is required")
    code = next((FIELD_CODES[p] for p in reversed(loc) if p in FIELD_CODES), "ModelArts.0102")
    return bad(code, f"[{where}] {err.get('msg', 'is invalid')}")


def _weight(c: ServiceConfig, i: int, required: bool) -> int:
    raw = c.weight
    if raw is None:
        if required:
            raise bad("ModelArts.3007", f"config[{i}].weight is required for a real-time service")
        return 100
    if isinstance(raw, str):
        text = raw.strip()
        if not text.isdigit():
            raise bad("ModelArts.3007", f"config[{i}].weight must be an integer, got '{raw}'")
        raw = int(text)
    if not 0 <= raw <= 100:
        raise bad("ModelArts.3007", f"config[{i}].weight must be between 0 and 100, got {raw}")
    return raw


def _size(c: ServiceConfig, i: int, infer_type: InferType, pool: str | None) -> Size:
    if c.specification == CUSTOM:
        spec = c.custom_spec
        if spec is None:
            raise bad("ModelArts.3011", f"config[{i}]: specification custom needs custom_spec")
        if infer_type == InferType.REAL_TIME and pool is None:
            raise bad(
                "ModelArts.3013",
                f"config[{i}]: specification custom is supported only in a dedicated resource pool "
                "(cluster_id or pool_name)",
            )
        cpu = round(spec.cpu, 2)
        if cpu < 0.01:
            raise bad("ModelArts.3012", f"config[{i}].custom_spec.cpu must be at least 0.01")
        if spec.memory < 1:
            raise bad("ModelArts.3012", f"config[{i}].custom_spec.memory must be a positive number of MB")
        gpu = round(spec.gpu_p4 or 0.0, 2)
        ascend = spec.ascend_a310 or 0
        if gpu < 0 or ascend < 0:
            raise bad("ModelArts.3012", f"config[{i}].custom_spec: gpu_p4 and ascend_a310 cannot be negative")
        if gpu > 0 and ascend > 0:
            raise bad("ModelArts.3012", f"config[{i}].custom_spec: set either gpu_p4 or ascend_a310")
        size = Size(cpu, spec.memory, gpu, ascend)
    else:
        if c.custom_spec is not None:
            raise bad("ModelArts.3011", f"config[{i}]: custom_spec is only for specification custom")
        found = SPECIFICATIONS.get(c.specification)
        if found is None:
            known = ", ".join([*SPECIFICATIONS, CUSTOM])
            raise bad("ModelArts.3010", f"config[{i}]: unknown specification '{c.specification}' ({known})")
        size = found
    if (size.gpu or size.ascend) and infer_type != InferType.EDGE:
        raise bad(
            "ModelArts.3026",
            f"config[{i}]: GPU and Ascend resources are not available on this platform",
        )
    return size


def _envs(c: ServiceConfig, i: int) -> dict[str, str]:
    envs = c.envs or {}
    if len(envs) > 64:
        raise bad("ModelArts.3023", f"config[{i}].envs: at most 64 variables")
    for k, v in envs.items():
        if not ENV_NAME.match(k):
            raise bad("ModelArts.3023", f"config[{i}].envs: '{k}' is not a valid variable name")
        if len(v) > 4096:
            raise bad("ModelArts.3023", f"config[{i}].envs['{k}'] is longer than 4096 characters")
    return dict(envs)


def _rolling(c: ServiceConfig, i: int, pool: str | None) -> tuple[float, float, int | None]:
    props = c.additional_properties
    if props is None:
        return 1.0, 0.0, None
    if (props.log_volume or props.persistent_volumes) and pool is None:
        raise bad(
            "ModelArts.3019",
            f"config[{i}]: log_volume and persistent_volumes need a dedicated resource pool",
        )
    volumes: list[LogVolume | PersistentVolume] = [
        *(props.log_volume or []),
        *(props.persistent_volumes or []),
    ]
    for vol in volumes:
        if not vol.mount_path.startswith("/"):
            raise bad("ModelArts.3019", f"config[{i}]: mount_path '{vol.mount_path}' must be absolute")
    surge = 1.0 if props.max_surge is None else props.max_surge
    unavailable = 0.0 if props.max_unavailable is None else props.max_unavailable
    if props.max_surge is not None and not props.max_surge > 0:
        raise bad("ModelArts.3020", f"config[{i}].additional_properties.max_surge must be greater than 0")
    if props.max_unavailable is not None and not props.max_unavailable > 0:
        raise bad(
            "ModelArts.3020", f"config[{i}].additional_properties.max_unavailable must be greater than 0"
        )
    grace = props.termination_grace_period_seconds
    if grace is not None and not 0 <= grace <= MAX_GRACE_SECONDS:
        raise bad(
            "ModelArts.3027",
            f"config[{i}].additional_properties.termination_grace_period_seconds "
            f"must be 0-{MAX_GRACE_SECONDS}",
        )
    return surge, unavailable, grace


def _type_fields(c: ServiceConfig, i: int, infer_type: InferType) -> None:
    batch_fields = ("src_path", "dest_path", "req_uri", "mapping_type", "mapping_rule", "src_type")
    if infer_type == InferType.BATCH:
        for name in ("src_path", "dest_path", "req_uri", "mapping_type"):
            if not getattr(c, name):
                raise bad("ModelArts.3021", f"config[{i}].{name} is required for a batch service")
        if c.mapping_type not in ("file", "csv"):
            raise bad("ModelArts.3021", f"config[{i}].mapping_type must be file or csv")
        if c.mapping_type == "csv" and not c.mapping_rule:
            raise bad("ModelArts.3021", f"config[{i}].mapping_rule is required when mapping_type is csv")
        if c.src_type not in (None, "", "ManifestFile"):
            raise bad("ModelArts.3021", f"config[{i}].src_type must be ManifestFile or empty")
    else:
        given = [n for n in batch_fields if getattr(c, n) is not None]
        if given:
            raise bad("ModelArts.3031", f"config[{i}]: {', '.join(given)} only apply to batch services")
    if infer_type == InferType.EDGE:
        if not c.nodes or any(not n.strip() for n in c.nodes):
            raise bad("ModelArts.3022", f"config[{i}].nodes (edge node ids) is required for an edge service")
    elif c.nodes is not None:
        raise bad("ModelArts.3031", f"config[{i}].nodes only applies to edge services")


def validate_description(text: str | None) -> str:
    text = text or ""
    if len(text) > 100:
        raise bad("ModelArts.3002", "description is longer than 100 characters")
    found = sorted(DESCRIPTION_FORBIDDEN & set(text))
    if found:
        raise bad("ModelArts.3002", f"description cannot contain {' '.join(found)}")
    return text


def validate_schedule(req_schedule: list[Any] | None, infer_type: InferType) -> tuple[str, int] | None:
    if not req_schedule:
        return None
    if infer_type != InferType.REAL_TIME:
        raise bad("ModelArts.3016", "schedule can be configured only for real-time services")
    if len(req_schedule) > 1:
        raise bad("ModelArts.3016", "at most one schedule entry (type stop)")
    s = req_schedule[0]
    if s.type != "stop":
        raise bad("ModelArts.3016", f"schedule type must be stop, got '{s.type}'")
    if s.time_unit not in TimeUnit.__members__:
        raise bad("ModelArts.3016", f"schedule time_unit must be DAYS, HOURS or MINUTES, got '{s.time_unit}'")
    if not 1 <= s.duration <= 100_000:
        raise bad("ModelArts.3016", "schedule duration must be a positive integer")
    return s.time_unit, s.duration


def validate_properties(props: ServiceAdditionalProperties | None) -> tuple[str | None, frozenset[int]]:
    if props is None:
        return None, frozenset()
    for ch in props.log_report_channels or []:
        if ch.type != "LTS":
            raise bad("ModelArts.3024", f"log_report_channels type must be LTS, got '{ch.type}'")
        conf = ch.configuration
        if conf is not None and not (0 < len(conf.log_group_id) <= 64 and 0 < len(conf.log_stream_id) <= 64):
            raise bad("ModelArts.3024", "log_group_id and log_stream_id are 1-64 characters")
    smn = props.smn_notification
    if smn is None:
        return None, frozenset()
    if not smn.topic_urn.strip():
        raise bad("ModelArts.3017", "smn_notification.topic_urn is required")
    if not smn.events or not set(smn.events) <= SMN_EVENTS:
        raise bad("ModelArts.3018", "smn_notification.events must be a non-empty list of 1, 3, 7, 11")
    return smn.topic_urn, frozenset(smn.events)


def validate_configs(
    configs: list[ServiceConfig],
    infer_type: InferType,
    service_pool: str | None,
    pools: frozenset[str],
    max_instances: int,
) -> list[VersionPlan]:
    if not configs:
        raise bad("ModelArts.3006", "config needs at least one model")
    if infer_type == InferType.BATCH and len(configs) != 1:
        raise bad("ModelArts.3006", "a batch service takes exactly one model")
    if len(configs) > 8:
        raise bad("ModelArts.3006", "at most 8 models per service")
    seen: set[str] = set()
    out = []
    for i, c in enumerate(configs):
        if not c.model_id.strip():
            raise bad("ModelArts.0102", f"config[{i}].model_id is required")
        if c.model_id in seen:
            raise bad(
                "ModelArts.3009", f"config[{i}]: model '{c.model_id}' appears twice; versions must be unique"
            )
        seen.add(c.model_id)
        weight = _weight(c, i, infer_type == InferType.REAL_TIME)
        pool = c.pool_name or c.cluster_id or service_pool
        if pool is not None and pool not in pools:
            raise bad("ModelArts.3005", f"config[{i}]: resource pool '{pool}' does not exist or has no nodes")
        size = _size(c, i, infer_type, pool)
        if not 1 <= c.instance_count <= max_instances:
            raise bad(
                "ModelArts.3014",
                f"config[{i}].instance_count must be between 1 and {max_instances}, got {c.instance_count}",
            )
        timeout = c.deploy_timeout_in_seconds
        if timeout is not None and not 1 <= timeout <= MAX_DEPLOY_TIMEOUT:
            raise bad(
                "ModelArts.3015", f"config[{i}].deploy_timeout_in_seconds must be 1-{MAX_DEPLOY_TIMEOUT}"
            )
        _type_fields(c, i, infer_type)
        surge, unavailable, grace = _rolling(c, i, pool)
        out.append(
            VersionPlan(
                index=i,
                model_id=c.model_id,
                weight=weight,
                instance_count=c.instance_count,
                specification=c.specification,
                size=size,
                pool=pool,
                envs=_envs(c, i),
                deploy_timeout_seconds=timeout,
                max_surge=surge,
                max_unavailable=unavailable,
                grace_seconds=grace,
                raw=c.model_dump(mode="json", exclude_none=True),
            )
        )
    if infer_type == InferType.REAL_TIME and sum(v.weight for v in out) != 100:
        raise bad(
            "ModelArts.3008",
            f"the weights of a real-time service must sum to 100, got {sum(v.weight for v in out)}",
        )
    return out


def validate_create(req: ServiceCreate, pools: frozenset[str], max_instances: int) -> ServicePlan:
    if not 1 <= len(req.service_name) <= 64:
        raise bad("ModelArts.3001", "service_name must be 1-64 characters")
    validate_description(req.description)
    try:
        infer_type = InferType(req.infer_type)
    except ValueError:
        raise bad(
            "ModelArts.3003", f"infer_type must be real-time, batch or edge, got '{req.infer_type}'"
        ) from None
    if req.vpc_id and not (req.security_group_id and req.subnet_network_id):
        raise bad("ModelArts.3004", "vpc_id needs security_group_id and subnet_network_id")
    service_pool = req.pool_name or req.cluster_id or None
    if service_pool is not None and service_pool not in pools:
        raise bad("ModelArts.3005", f"resource pool '{service_pool}' does not exist or has no nodes")
    versions = validate_configs(req.config, infer_type, service_pool, pools, max_instances)
    stop = validate_schedule(req.schedule, infer_type)
    topic, events = validate_properties(req.additional_properties)
    return ServicePlan(
        name=req.service_name,
        infer_type=infer_type,
        versions=versions,
        stop_after=stop,
        topic_urn=topic,
        events=events,
        raw=req.model_dump(mode="json", exclude_none=True),
        pools=frozenset(v.pool for v in versions),
    )


def rollout_policy(req: RolloutRequest | None, versions: list[VersionPlan]) -> Policy:
    """The rollout of an update: the seed's surge/unavailable/grace summed over the new configs."""
    instances = [v.instance_count for v in versions]
    from modelfleet.core.rollout import surge_count, unavailable_count

    surge = sum(surge_count(v.max_surge, n) for v, n in zip(versions, instances, strict=True))
    unavailable = sum(
        unavailable_count(v.max_unavailable, n) for v, n in zip(versions, instances, strict=True)
    )
    grace = max((v.grace_seconds for v in versions if v.grace_seconds is not None), default=30)
    r = req or RolloutRequest()
    try:
        strategy = Strategy(r.strategy)
        if strategy == Strategy.CANARY:
            steps = tuple(r.steps or (10, 50, 100))
        elif strategy == Strategy.LINEAR:
            steps = linear_steps(r.step_percent or 25)
        else:
            steps = (100,)
        if r.bake_seconds < 0 or not 0 <= r.max_error_rate <= 1 or r.min_requests < 0:
            raise ValidationFailed("bake_seconds >= 0, max_error_rate in [0, 1], min_requests >= 0")
        p95_limit = p95_threshold(r)
        if p95_limit is not None and p95_limit <= 0:
            raise ValidationFailed("max_p95_latency_ms must be > 0")
        return Policy(
            strategy=strategy,
            max_surge=surge,
            max_unavailable=unavailable,
            grace_seconds=float(grace),
            steps=steps,
            bake_seconds=r.bake_seconds,
            max_error_rate=r.max_error_rate,
            max_p95_latency_ms=p95_limit,
            min_requests=r.min_requests,
        )
    except ValueError:
        raise bad(
            "ModelArts.3025", f"rollout strategy must be rolling, canary or linear, got '{r.strategy}'"
        ) from None
    except ValidationFailed as e:
        raise bad("ModelArts.3025", f"rollout: {e}") from None


def p95_threshold(r: RolloutRequest) -> float | None:
    """`max_p95_latency_ms`, or its earlier name `max_latency_ms` (kept for callers that still
    send it; the gate now judges the p95 either way)."""
    new, old = r.max_p95_latency_ms, r.max_latency_ms
    if new is not None and old is not None and new != old:
        raise ValidationFailed("give max_p95_latency_ms only (max_latency_ms is its earlier name)")
    return new if new is not None else old
