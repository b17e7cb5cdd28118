"""The service face's operations: create, read, list, update (rolling upgrade or canary), start,
stop, delete, event history. Thin over the control plane: validation (validation.py), translation
(translate.py), then `ControlPlane.services` / `.deployments`. Batch and edge services go to the
engine registered for their infer_type (backends.py)."""

from __future__ import annotations

import importlib
import uuid
from datetime import datetime
from typing import Any

from modelfleet.control.container import ControlPlane
from modelfleet.control.errors import ControlError
from modelfleet.control.rollouts import dump_rollout, observe
from modelfleet.control.services import REAL_TIME, is_service, service_status
from modelfleet.core.lifecycle import DeploymentState, ModelState
from modelfleet.core.rollout import Plan, Slot, Strategy, start
from modelfleet.faces.service.backends import ServiceBackend, backend_for
from modelfleet.faces.service.errors import ServiceError, bad
from modelfleet.faces.service.translate import (
    deploy_timeout,
    event_view,
    face_dict,
    face_list,
    identity,
    new_record,
    new_version_id,
    service_view,
    version_face,
    version_spec,
)
from modelfleet.faces.service.validation import (
    VersionPlan,
    rollout_policy,
    validate_configs,
    validate_create,
    validate_description,
    validate_properties,
    validate_schedule,
)
from schemas.deployments import DeploymentRecord, VersionSpec
from schemas.events import EventType
from schemas.models import ModelRecord
from schemas.services import InferType, ServiceCreate, ServiceUpdate

LIST_LIMIT = 1000
RECONFIGURE_ATTEMPTS = 8


def not_found(service_id: str) -> ServiceError:
    return ServiceError(404, "ModelArts.3501", f"service '{service_id}' was not found")


class ServiceFace:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    # --- helpers ----------------------------------------------------------------------------------
    def _record(self, project_id: str, service_id: str) -> DeploymentRecord:
        rec = self.cp.repo.get_deployment(project_id, service_id)
        if rec is None or not is_service(rec):
            raise not_found(service_id)
        return rec

    def _ready_models(self, project_id: str, versions: list[VersionPlan]) -> dict[str, ModelRecord]:
        models = {}
        for vp in versions:
            m = self.cp.repo.get_model(project_id, vp.model_id)
            if m is None:
                raise ServiceError(404, "ModelArts.3028", f"model '{vp.model_id}' was not found")
            if m.state != ModelState.READY:
                raise ServiceError(
                    409, "ModelArts.3029", f"model '{vp.model_id}' is {m.state.value}, not ready"
                )
            models[vp.model_id] = m
        return models

    def _backend(self, infer_type: str) -> ServiceBackend:
        backend = backend_for(infer_type, importlib.import_module)
        if backend is None:
            raise ServiceError(
                501, "ModelArts.3520", f"infer_type '{infer_type}' is not available on this platform yet"
            )
        return backend

    # --- create -----------------------------------------------------------------------------------
    def create(self, project_id: str, req: ServiceCreate, now: datetime) -> dict[str, Any]:
        ctl = self.cp.services
        plan = validate_create(req, ctl.pools(), ctl.max_instances(project_id))
        models = self._ready_models(project_id, plan.versions)
        if plan.topic_urn:
            ctl.notifications.check_topic(plan.topic_urn)
        service_id = str(uuid.uuid4())
        real_time = plan.infer_type == InferType.REAL_TIME
        backend = None if real_time else self._backend(plan.infer_type.value)
        rec = new_record(project_id, service_id, plan, models, now, real_time)
        rec = ctl.create(rec, now)
        if backend is None:
            return {"service_id": service_id, "resource_ids": face_list(rec, "resource_ids")}
        try:
            resource_ids = backend.create(project_id, service_id, req, now)
        except Exception:
            self.cp.deployments.delete(project_id, service_id, now, force=True)
            raise
        self.cp.deployments.update(project_id, service_id, now, face={"resource_ids": resource_ids})
        return {"service_id": service_id, "resource_ids": resource_ids}

    # --- read -------------------------------------------------------------------------------------
    def view(self, rec: DeploymentRecord, now: datetime) -> dict[str, Any]:
        routes = self.cp.repo.routes(rec.uid)
        models = {
            v.model_id: m
            for v in rec.versions
            if (m := self.cp.repo.get_model(rec.project_id, v.model_id)) is not None
        }
        infer_type = str(rec.face.get("infer_type"))
        if infer_type != REAL_TIME:
            st = self._backend(infer_type).status(rec.project_id, rec.deployment_id, now)
            extra: dict[str, Any] = {"progress": st.progress, **st.detail}
            return service_view(rec, routes, st.status, st.failed_reason, models, extra)
        status = service_status(rec, routes)
        extra = {}
        due = self.cp.services.stop_due_at(rec)
        if due is not None:
            extra["auto_stop_at"] = int(due.timestamp() * 1000)
        return service_view(rec, routes, status.state, status.reason, models, extra)

    def get(self, project_id: str, service_id: str, now: datetime) -> dict[str, Any]:
        return self.view(self._record(project_id, service_id), now)

    def list(self, project_id: str, query: dict[str, str], now: datetime) -> dict[str, Any]:
        try:
            offset = int(query.get("offset", "0") or 0)
            limit = int(query.get("limit", str(LIST_LIMIT)) or LIST_LIMIT)
        except ValueError:
            raise bad("ModelArts.0102", "offset and limit must be integers") from None
        if offset < 0 or not 1 <= limit <= LIST_LIMIT:
            raise bad("ModelArts.0102", f"offset must be >= 0 and limit 1-{LIST_LIMIT}")
        sort_by = query.get("sort_by", "publish_at")
        order = query.get("order", "desc")
        if sort_by not in ("publish_at", "service_name") or order not in ("asc", "desc"):
            raise bad("ModelArts.0102", "sort_by is publish_at or service_name; order is asc or desc")
        recs = [d for d in self.cp.repo.list_deployments(project_id) if is_service(d)]
        if name := query.get("service_name"):
            recs = [d for d in recs if name.lower() in str(d.face.get("service_name", "")).lower()]
        if infer_type := query.get("infer_type"):
            recs = [d for d in recs if d.face.get("infer_type") == infer_type]
        if model_id := query.get("model_id"):
            recs = [d for d in recs if any(v.model_id == model_id for v in d.versions)]
        if workspace := query.get("workspace_id"):
            recs = [d for d in recs if d.face.get("workspace_id") == workspace]
        key = (
            (lambda d: d.created_at)
            if sort_by == "publish_at"
            else (lambda d: str(d.face.get("service_name")))
        )
        recs.sort(key=key, reverse=order == "desc")
        views = [self.view(d, now) for d in recs]
        if status := query.get("status"):
            views = [v for v in views if v["status"] == status]
        page = views[offset : offset + limit]
        return {"total_count": len(views), "count": len(page), "services": page}

    def events(self, project_id: str, service_id: str) -> dict[str, Any]:
        rec = self._record(project_id, service_id)
        evs = [e for e in self.cp.events.history(rec.uid, 500) if e.type == EventType.SERVICE_STATUS_CHANGED]
        return {"total_count": len(evs), "events": [event_view(e) for e in evs]}

    # --- lifecycle --------------------------------------------------------------------------------
    def stop(self, project_id: str, service_id: str, now: datetime) -> dict[str, Any]:
        rec = self._record(project_id, service_id)
        if rec.face.get("infer_type") != REAL_TIME:
            self._backend(str(rec.face.get("infer_type"))).stop(project_id, service_id, now)
        else:
            self.cp.services.stop(project_id, service_id, now, "stopped by request")
        return self.get(project_id, service_id, now)

    def start(self, project_id: str, service_id: str, now: datetime) -> dict[str, Any]:
        rec = self._record(project_id, service_id)
        if rec.face.get("infer_type") != REAL_TIME:
            self._backend(str(rec.face.get("infer_type"))).start(project_id, service_id, now)
            return self.get(project_id, service_id, now)
        if rec.state != DeploymentState.STOPPED:
            raise ServiceError(409, "ModelArts.3502", f"service '{service_id}' is not stopped")
        self.cp.deployments.update(
            project_id, service_id, now, face={"stop_reason": "", "running_since": None}
        )
        self.cp.deployments.start(project_id, service_id, now)
        return self.get(project_id, service_id, now)

    def delete(self, project_id: str, service_id: str, now: datetime) -> None:
        rec = self._record(project_id, service_id)
        if rec.face.get("infer_type") != REAL_TIME:
            self._backend(str(rec.face.get("infer_type"))).delete(project_id, service_id, now)
        self.cp.deployments.delete(project_id, service_id, now, force=True)

    # --- update -----------------------------------------------------------------------------------
    def update(self, project_id: str, service_id: str, req: ServiceUpdate, now: datetime) -> dict[str, Any]:
        rec = self._record(project_id, service_id)
        infer_type = InferType(str(rec.face.get("infer_type")))
        face: dict[str, Any] = {}
        request = face_dict(rec, "request")
        if req.description is not None:
            face["description"] = validate_description(req.description)
            request["description"] = req.description
        if req.schedule is not None:
            stop = validate_schedule(req.schedule, infer_type)
            face["stop_after"] = {"time_unit": stop[0], "duration": stop[1]} if stop else None
            request["schedule"] = [s.model_dump(mode="json") for s in req.schedule]
        if req.additional_properties is not None:
            face.update(self._properties(rec, req))
            request["additional_properties"] = req.additional_properties.model_dump(
                mode="json", exclude_none=True
            )
        if req.status is not None and req.status not in ("running", "stopped"):
            raise bad("ModelArts.0102", "status can be set to running or stopped")
        if req.config is None and req.rollout is not None:
            raise bad("ModelArts.3025", "rollout applies to an update of config")
        if face or request != rec.face.get("request"):
            face["request"] = request
            self.cp.deployments.update(project_id, service_id, now, face=face)
        if req.config is not None:
            if infer_type != InferType.REAL_TIME:
                raise ServiceError(
                    409, "ModelArts.3502", f"the config of a {infer_type.value} service cannot change"
                )
            self._reconfigure_retrying(project_id, service_id, req, now)
        if req.status == "stopped":
            return self.stop(project_id, service_id, now)
        if req.status == "running" and self._record(project_id, service_id).state == DeploymentState.STOPPED:
            return self.start(project_id, service_id, now)
        return self.get(project_id, service_id, now)

    def _properties(self, rec: DeploymentRecord, req: ServiceUpdate) -> dict[str, Any]:
        props = req.additional_properties
        assert props is not None
        before = dict(face_dict(rec, "request").get("additional_properties") or {})
        if before.get("websocket_upgrade") and props.websocket_upgrade is False:
            raise bad("ModelArts.3030", "websocket_upgrade cannot be turned off once enabled")
        if before.get("log_report_channels") and props.log_report_channels is not None:
            given = [c.model_dump(mode="json", exclude_none=True) for c in props.log_report_channels]
            if given != before["log_report_channels"]:
                raise bad("ModelArts.3030", "log_report_channels cannot be changed once enabled")
        topic, events = validate_properties(props)
        if topic:
            self.cp.services.notifications.check_topic(topic)
            return {"notification": {"topic_urn": topic, "events": sorted(events)}}
        return {}

    def _reconfigure_retrying(
        self, project_id: str, service_id: str, req: ServiceUpdate, now: datetime
    ) -> None:
        """Heartbeats and the planner bump the record's version all the time: re-read and retry."""
        for attempt in range(RECONFIGURE_ATTEMPTS):
            try:
                self._reconfigure(self._record(project_id, service_id), req, now)
                return
            except ControlError as e:
                if e.code != "ModelArts.3503" or attempt == RECONFIGURE_ATTEMPTS - 1:
                    raise

    def _reconfigure(self, rec: DeploymentRecord, req: ServiceUpdate, now: datetime) -> None:
        """New configs: the same version where model, spec, pool and envs are unchanged (instance
        count and weight may change), a new version otherwise; then a rollout moves between them."""
        assert req.config is not None
        if isinstance(rec.face.get("rollout"), dict):
            raise ServiceError(409, "ModelArts.3504", "an update is still rolling out; wait for it to finish")
        ctl = self.cp.services
        request = face_dict(rec, "request")
        service_pool = request.get("pool_name") or request.get("cluster_id")
        plans = validate_configs(
            req.config, InferType.REAL_TIME, service_pool, ctl.pools(), ctl.max_instances(rec.project_id)
        )
        models = self._ready_models(rec.project_id, plans)
        policy = rollout_policy(req.rollout, plans)
        version_configs = face_dict(rec, "version_configs")
        by_identity = {str(c.get("identity")): vid for vid, c in version_configs.items()}
        taken = {v.version_id for v in rec.versions}
        current = {v.version_id: v for v in rec.versions}
        new_slots: dict[str, Slot] = {}
        added: list[VersionSpec] = []
        for vp in plans:
            vid = by_identity.get(str(identity(vp)))
            if vid is None or vid not in current or vid in new_slots:
                vid = new_version_id(models[vp.model_id], taken)
                taken.add(vid)
                added.append(version_spec(vp, models[vp.model_id], vid, 0, 0))
            version_configs[vid] = version_face(vp)
            new_slots[vid] = Slot(vp.instance_count, vp.weight)
        plan = Plan(
            old={v.version_id: Slot(v.allocations, v.weight) for v in rec.versions},
            new=new_slots,
            policy=policy,
        )
        if policy.strategy != Strategy.ROLLING and not plan.fresh():
            raise bad(
                "ModelArts.3025", "a canary or linear rollout needs a new model version to shift traffic to"
            )
        face: dict[str, Any] = {
            "config": [vp.raw for vp in plans],
            "version_configs": version_configs,
            "pools": {
                **face_dict(rec, "pools"),
                **{vid: c["pool"] for vid, c in version_configs.items() if c.get("pool")},
            },
        }
        versions = [*rec.versions, *added]
        if rec.state in (DeploymentState.STOPPED, DeploymentState.STOPPING) or not rec.versions:
            # Nothing runs: the new configs simply replace the old ones.
            versions = [
                (current.get(vid) or next(a for a in added if a.version_id == vid)).model_copy(
                    update={"allocations": s.allocations, "weight": s.weight}
                )
                for vid, s in new_slots.items()
            ]
            face["version_configs"] = {vid: version_configs[vid] for vid in new_slots}
            face["rollout"] = None
        else:
            probe = rec.model_copy(update={"versions": versions})
            progress = start(plan, observe(probe, self.cp.repo.routes(rec.uid)), now)
            face["rollout"] = dump_rollout(plan, progress)
            face["update_status"] = progress.phase.value
            face["update_reason"] = ""
        new = rec.model_copy(
            update={
                "versions": versions,
                "face": {**rec.face, **face},
                "deploy_timeout_seconds": deploy_timeout(plans),
                "version_no": rec.version_no + 1,
                "updated_at": now,
            }
        )
        ctl.write(rec, new, [])
        fresh = self._record(rec.project_id, rec.deployment_id)
        if isinstance(fresh.face.get("rollout"), dict):
            ctl.rollouts.tick(fresh, self.cp.repo.routes(fresh.uid), {}, now)
        else:
            ctl.place(now)
