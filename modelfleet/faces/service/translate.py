"""Translation between the service face and the core: a validated `ServicePlan` becomes a
`DeploymentRecord` of kind SERVICE (one weighted `VersionSpec` per config entry, sized by its
specification: cpu -> threads per instance, memory -> admission against the node's memory, each
instance one allocation); a record and its routes become the service's view."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from modelfleet.control.ids import new_uid
from modelfleet.core.lifecycle import WAITING_FOR_PLACEMENT, DeploymentState
from modelfleet.core.service_state import ServiceState
from modelfleet.faces.service.validation import ServicePlan, VersionPlan
from schemas.deployments import (
    DEFAULT_MAX_BATCH_SIZE,
    DeploymentKind,
    DeploymentRecord,
    RouteRecord,
    VersionSpec,
)
from schemas.events import StatusEvent
from schemas.models import ModelRecord

DEFAULT_DEPLOY_TIMEOUT = 300


def face_dict(rec: DeploymentRecord, key: str) -> dict[str, Any]:
    """A dict the service keeps in `record.face` (empty if absent)."""
    value = rec.face.get(key)
    return dict(value) if isinstance(value, dict) else {}


def face_list(rec: DeploymentRecord, key: str) -> list[Any]:
    value = rec.face.get(key)
    return list(value) if isinstance(value, list) else []


def identity(vp: VersionPlan) -> dict[str, Any]:
    """What makes two config entries the same running version (instance count and weight aside)."""
    return {
        "model_id": vp.model_id,
        "specification": vp.specification,
        "cpu": vp.size.cpu,
        "memory_mb": vp.size.memory_mb,
        "pool": vp.pool,
        "envs": vp.envs,
    }


def new_version_id(model: ModelRecord, taken: set[str]) -> str:
    """The model's version label (so `/v2/models/{service}/versions/{label}` reads naturally),
    suffixed when another version of the service already uses it."""
    base = model.version
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def version_spec(
    vp: VersionPlan, model: ModelRecord, version_id: str, allocations: int, weight: int
) -> VersionSpec:
    return VersionSpec(
        version_id=version_id,
        model_id=model.model_id,
        weight=weight,
        allocations=allocations,
        threads_per_allocation=vp.size.threads,
        model_bytes=model.size_bytes,
        per_allocation_memory_bytes=vp.size.memory_bytes,
        cache_size_bytes=0,
    )


def version_face(vp: VersionPlan) -> dict[str, Any]:
    return {"config": vp.raw, "identity": identity(vp), "pool": vp.pool, "envs": vp.envs}


def deploy_timeout(versions: Iterable[VersionPlan]) -> int:
    given = [v.deploy_timeout_seconds for v in versions if v.deploy_timeout_seconds is not None]
    return max(given) if given else DEFAULT_DEPLOY_TIMEOUT


def new_record(
    project_id: str,
    service_id: str,
    plan: ServicePlan,
    models: Mapping[str, ModelRecord],
    now: datetime,
    real_time: bool,
) -> DeploymentRecord:
    """The core record of a new service. Batch and edge services are run by their own engines:
    their record only holds the face's fields (stopped, no versions, so the planner skips it)."""
    versions: list[VersionSpec] = []
    version_configs: dict[str, Any] = {}
    if real_time:
        taken: set[str] = set()
        for vp in plan.versions:
            vid = new_version_id(models[vp.model_id], taken)
            taken.add(vid)
            versions.append(version_spec(vp, models[vp.model_id], vid, vp.instance_count, vp.weight))
            version_configs[vid] = version_face(vp)
    request = {k: v for k, v in plan.raw.items() if k != "config"}
    face: dict[str, Any] = {
        "infer_type": plan.infer_type.value,
        "service_name": plan.name,
        "description": plan.raw.get("description", ""),
        "workspace_id": plan.raw.get("workspace_id") or "0",
        "request": request,
        "config": [vp.raw for vp in plan.versions],
        "version_configs": version_configs,
        "pools": {vid: c["pool"] for vid, c in version_configs.items() if c["pool"]},
        "stop_after": {"time_unit": plan.stop_after[0], "duration": plan.stop_after[1]}
        if plan.stop_after
        else None,
        "notification": {"topic_urn": plan.topic_urn, "events": sorted(plan.events)}
        if plan.topic_urn
        else None,
        "status": None,
        "running_since": None,
        "resource_ids": [f"INF-{service_id.replace('-', '')[:16]}@{v.version_id}" for v in versions],
    }
    state = DeploymentState.PENDING if real_time else DeploymentState.STOPPED
    return DeploymentRecord(
        project_id=project_id,
        deployment_id=service_id,
        uid=new_uid(),
        kind=DeploymentKind.SERVICE,
        state=state,
        reason=WAITING_FOR_PLACEMENT if real_time else "",
        versions=versions,
        deploy_timeout_seconds=deploy_timeout(plan.versions),
        max_batch_size=DEFAULT_MAX_BATCH_SIZE,
        created_at=now,
        updated_at=now,
        state_since=now,
        face=face,
    )


def _ms(at: datetime | None) -> int | None:
    return int(at.timestamp() * 1000) if at else None


def service_view(
    rec: DeploymentRecord,
    routes: list[RouteRecord],
    status: ServiceState | str,
    reason: str,
    models: Mapping[str, ModelRecord],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    face = rec.face
    request = face_dict(rec, "request")
    ready: dict[str, int] = {}
    for r in routes:
        if r.routing_state.value == "started":
            ready[r.version_id] = ready.get(r.version_id, 0) + min(
                r.current_allocations, r.target_allocations
            )
    configs = []
    version_configs = face_dict(rec, "version_configs")
    for v in rec.versions:
        raw = dict((version_configs.get(v.version_id) or {}).get("config") or {})
        m = models.get(v.model_id)
        configs.append(
            {
                **raw,
                "model_id": v.model_id,
                "model_name": m.name if m else None,
                "model_version": m.version if m else None,
                "version_id": v.version_id,
                "weight": v.weight,
                "instance_count": v.allocations,
                "ready_instance_count": ready.get(v.version_id, 0),
                "threads_per_instance": v.threads_per_allocation,
                "inference_url": f"/v2/models/{rec.deployment_id}/versions/{v.version_id}/infer",
            }
        )
    status_value = status.value if isinstance(status, ServiceState) else status
    rollout = face.get("rollout") if isinstance(face.get("rollout"), dict) else face.get("last_rollout")
    view: dict[str, Any] = {
        "service_id": rec.deployment_id,
        "service_name": face.get("service_name"),
        "description": face.get("description", ""),
        "infer_type": face.get("infer_type"),
        "workspace_id": face.get("workspace_id", "0"),
        "project_id": rec.project_id,
        "status": status_value,
        "failed_reason": reason if status_value in ("failed", "concerning") else "",
        "status_reason": reason,
        "access_address": f"/v1/{rec.project_id}/services/{rec.deployment_id}/infer",
        "infer_url": f"/v1/{rec.project_id}/services/{rec.deployment_id}/infer",
        "oip_url": f"/v2/models/{rec.deployment_id}/infer",
        "config": configs if rec.versions else face_list(rec, "config"),
        "instance_count": sum(v.allocations for v in rec.versions),
        "ready_instance_count": sum(ready.values()),
        "schedule": request.get("schedule", []),
        "additional_properties": request.get("additional_properties", {}),
        "cluster_id": request.get("cluster_id"),
        "pool_name": request.get("pool_name"),
        "vpc_id": request.get("vpc_id"),
        "security_group_id": request.get("security_group_id"),
        "subnet_network_id": request.get("subnet_network_id"),
        "resource_ids": face.get("resource_ids", []),
        "update_status": face.get("update_status"),
        "update_reason": face.get("update_reason", ""),
        "rollout": (rollout or {}).get("progress") if isinstance(rollout, dict) else None,
        "running_since": face.get("running_since"),
        "deploy_time": _ms(rec.created_at),
        "update_time": _ms(rec.updated_at),
        "start_time": _ms(rec.started_at),
        "version": rec.version_no,
    }
    if extra:
        view.update(extra)
    return view


def event_view(ev: StatusEvent) -> dict[str, Any]:
    """One entry of a service's event history (`event_code`: the seed's id, when it has one)."""
    code = ev.detail.get("event_code")
    return {
        "event_id": ev.event_id,
        "event_type": ev.type.value,
        "status": ev.detail.get("service_status") or ev.to_state or "",
        "previous_status": ev.from_state,
        "event_code": int(code) if code else None,
        "update": ev.detail.get("update"),
        "reason": ev.reason,
        "occur_time": _ms(ev.at),
        "at": ev.at.isoformat(),
    }
