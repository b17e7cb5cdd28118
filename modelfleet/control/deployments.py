"""Real-time deployments: create, get, list, stop, start, delete.

Creating one commits it as `pending`, then the planner places it (→ `starting`); nodes load
it and report (→ `started`, or `failed` with the loader's reason).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from modelfleet.adapters.dynamo import ABSENT
from modelfleet.adapters.errors import ConditionFailed
from modelfleet.control.errors import Conflict, NotFound
from modelfleet.control.events import EventLog
from modelfleet.control.ids import new_uid
from modelfleet.control.planning import Planner, route_event, with_state
from modelfleet.control.repository import Repository
from modelfleet.core.lifecycle import WAITING_FOR_PLACEMENT, DeploymentState, ModelState, RoutingState
from modelfleet.core.placement import Priority
from schemas.deployments import (
    DeploymentCreate,
    DeploymentKind,
    DeploymentRecord,
    RouteRecord,
    VersionCreate,
    VersionSpec,
)
from schemas.events import EventType, StatusEvent
from schemas.models import ModelRecord

_DELETE_ATTEMPTS = 8  # re-reads when heartbeats or the autoscaler change the deployment meanwhile


class DeploymentService:
    def __init__(
        self,
        repo: Repository,
        events: EventLog,
        planner: Planner,
        nudge: Callable[[Iterable[str]], None],
    ) -> None:
        self._repo = repo
        self._events = events
        self._planner = planner
        self._nudge = nudge

    # --- reads --------------------------------------------------------------------------------
    def get(self, project_id: str, deployment_id: str) -> tuple[DeploymentRecord, list[RouteRecord]]:
        rec = self._repo.get_deployment(project_id, deployment_id)
        if rec is None:
            raise NotFound("deployment", deployment_id)
        return rec, self._repo.routes(rec.uid)

    def list_deployments(self, project_id: str) -> list[tuple[DeploymentRecord, list[RouteRecord]]]:
        recs = sorted(self._repo.list_deployments(project_id), key=lambda d: d.created_at)
        return [(d, self._repo.routes(d.uid)) for d in recs]

    def history(self, project_id: str, deployment_id: str, limit: int = 100) -> list[StatusEvent]:
        rec, _ = self.get(project_id, deployment_id)
        return self._events.history(rec.uid, limit)

    # --- create -------------------------------------------------------------------------------
    def _ready_model(self, project_id: str, model_id: str) -> ModelRecord:
        model = self._repo.get_model(project_id, model_id)
        if model is None:
            raise NotFound("model", model_id)
        if model.state != ModelState.READY:
            raise Conflict(
                f"model '{model_id}' is {model.state.value}; commit its files before deploying",
                code="model_not_ready",
            )
        return model

    def create(
        self,
        project_id: str,
        req: DeploymentCreate,
        now: datetime,
        kind: DeploymentKind = DeploymentKind.NATIVE,
        face: dict[str, object] | None = None,
        cache_size_bytes: int | None = 0,
    ) -> DeploymentRecord:
        """Commit a deployment as pending and place it. `cache_size_bytes`: the per-node inference
        cache of each version (None = the model's size, Elasticsearch's default; 0 = off)."""
        versions_in = req.versions or [VersionCreate(model_id=req.model_id or "", weight=100)]
        models = [self._ready_model(project_id, v.model_id) for v in versions_in]
        labels = [m.version for m in models]
        use_model_versions = len(set(labels)) == len(labels)
        versions = [
            VersionSpec(
                version_id=m.version if use_model_versions else str(i + 1),
                model_id=m.model_id,
                weight=v.weight,
                allocations=1 if req.priority == Priority.LOW else (v.allocations or req.allocations),
                threads_per_allocation=req.threads_per_allocation,
                model_bytes=m.size_bytes,
                cache_size_bytes=cache_size_bytes,
            )
            for i, (v, m) in enumerate(zip(versions_in, models, strict=True))
        ]
        rec = DeploymentRecord(
            project_id=project_id,
            deployment_id=req.deployment_id,
            uid=new_uid(),
            kind=kind,
            state=DeploymentState.PENDING,
            reason=WAITING_FOR_PLACEMENT,
            versions=versions,
            priority=req.priority,
            queue_capacity=req.queue_capacity,
            deploy_timeout_seconds=req.deploy_timeout_seconds,
            max_batch_size=req.max_batch_size,
            max_batch_delay_ms=req.max_batch_delay_ms,
            created_at=now,
            updated_at=now,
            state_since=now,
            face=face or {},
        )
        ev = EventLog.new(
            now,
            EventType.DEPLOYMENT_STATE_CHANGED,
            project_id,
            rec.uid,
            deployment_id=rec.deployment_id,
            to_state=rec.state.value,
            reason=rec.reason,
        )
        try:
            self._repo.store.transact(
                [self._repo.deployment_write(rec, expect=ABSENT), *self._events.writes([ev])]
            )
        except ConditionFailed:
            raise Conflict(
                f"a deployment with id '{req.deployment_id}' already exists", code="deployment_exists"
            ) from None
        self._events.publish([ev])
        self._place(now)
        return self.get(project_id, rec.deployment_id)[0]

    def _place(self, now: datetime) -> None:
        changes = self._planner.replan(now)
        nodes = {r.node_id for ch in changes for r in ch.upserts + ch.deletes}
        if nodes:
            self._nudge(n.url for n in self._repo.list_nodes() if n.node_id in nodes)

    # --- scale and settings ----------------------------------------------------------------------
    def update(
        self,
        project_id: str,
        deployment_id: str,
        now: datetime,
        allocations: int | None = None,
        face: dict[str, object] | None = None,
        require_state: DeploymentState | None = None,
        expect_version: int | None = None,
    ) -> DeploymentRecord:
        """Change every version's allocation count and/or merge face settings, then re-plan.

        An optimistic write: a concurrent change makes it re-read and try again, never lose either.
        `require_state`: refuse (409) unless the deployment is in that state when written.
        `expect_version`: the caller's optimistic lock: refuse (409) unless the record is still at
        that version, and never retry on its behalf.
        """
        for _ in range(8):
            rec, _ = self.get(project_id, deployment_id)
            if expect_version is not None and rec.version_no != expect_version:
                raise Conflict(
                    f"deployment '{deployment_id}' is at version {rec.version_no}, not {expect_version}; "
                    "read it again and retry",
                    code="version_conflict",
                )
            if require_state is not None and rec.state != require_state:
                raise Conflict(
                    f"cannot update deployment that is not in [{require_state.value}] state",
                    code="invalid_state",
                )
            changes: dict[str, object] = {"updated_at": now, "version_no": rec.version_no + 1}
            if allocations is not None:
                changes["versions"] = [
                    v.model_copy(update={"allocations": allocations}) for v in rec.versions
                ]
            if face:
                changes["face"] = {**rec.face, **face}
            updated = rec.model_copy(update=changes)
            try:
                self._repo.store.write(self._repo.deployment_write(updated, expect=rec.version_no))
            except ConditionFailed:
                if expect_version is not None:
                    raise Conflict(
                        f"deployment '{deployment_id}' changed meanwhile; read it again and retry",
                        code="version_conflict",
                    ) from None
                continue
            if allocations is not None and any(v.allocations != allocations for v in rec.versions):
                self._place(now)
            return self.get(project_id, deployment_id)[0]
        raise Conflict(f"deployment '{deployment_id}' keeps changing; retry", code="concurrent_update")

    # --- stop / start / delete ------------------------------------------------------------------
    def stop(self, project_id: str, deployment_id: str, now: datetime) -> DeploymentRecord:
        for _ in range(4):
            rec, routes = self.get(project_id, deployment_id)
            if rec.state in (DeploymentState.STOPPING, DeploymentState.STOPPED):
                return rec
            events: list[StatusEvent] = []
            live = [r for r in routes if r.routing_state != RoutingState.STOPPED]
            target = DeploymentState.STOPPING if live else DeploymentState.STOPPED
            updated = with_state(rec, target, "stopped by request", now, events)
            stopping = [
                r.model_copy(
                    update={
                        "routing_state": RoutingState.STOPPING,
                        "target_allocations": 0,
                        "updated_at": now,
                    }
                )
                for r in live
            ]
            events += [
                route_event(now, r, o.routing_state.value, RoutingState.STOPPING.value)
                for r, o in zip(stopping, live, strict=True)
            ]
            writes = [self._repo.deployment_write(updated, expect=rec.version_no)]
            writes += [self._repo.route_write(r) for r in stopping]
            writes += self._events.writes(events)
            try:
                self._repo.store.transact(writes)
            except ConditionFailed:
                continue
            self._events.publish(events)
            node_ids = {r.node_id for r in live}
            self._nudge(n.url for n in self._repo.list_nodes() if n.node_id in node_ids)
            self._place(now)  # freed capacity may let pending deployments start
            return updated
        raise Conflict(f"deployment '{deployment_id}' keeps changing; retry", code="concurrent_update")

    def start(self, project_id: str, deployment_id: str, now: datetime) -> DeploymentRecord:
        """Start a stopped deployment. The planner may still be writing the record as it settles
        (a stop's last routes going), so a concurrent write makes it re-read and try again."""
        for _ in range(4):
            rec, _ = self.get(project_id, deployment_id)
            if rec.state != DeploymentState.STOPPED:
                raise Conflict(
                    f"deployment '{deployment_id}' is {rec.state.value}; only a stopped one can be started",
                    code="invalid_state",
                )
            for v in rec.versions:
                self._ready_model(project_id, v.model_id)
            events: list[StatusEvent] = []
            updated = with_state(rec, DeploymentState.PENDING, WAITING_FOR_PLACEMENT, now, events)
            try:
                self._repo.store.transact(
                    [
                        self._repo.deployment_write(updated, expect=rec.version_no),
                        *self._events.writes(events),
                    ]
                )
            except ConditionFailed:
                continue
            self._events.publish(events)
            self._place(now)
            return self.get(project_id, deployment_id)[0]
        raise Conflict(f"deployment '{deployment_id}' keeps changing; retry", code="concurrent_update")

    def delete(self, project_id: str, deployment_id: str, now: datetime, force: bool = False) -> None:
        """Delete a deployment and its routes in one transaction.

        Routes and the record change underneath (heartbeats, the autoscaler, the planner), so a lost
        race re-reads and tries again; the state rule is checked against each fresh read."""
        for _ in range(_DELETE_ATTEMPTS):
            rec, routes = self.get(project_id, deployment_id)
            if (
                rec.state not in (DeploymentState.STOPPED, DeploymentState.FAILED, DeploymentState.PENDING)
                and not force
            ):
                raise Conflict(
                    f"deployment '{deployment_id}' is {rec.state.value}; "
                    "stop it first or delete with force=true",
                    code="invalid_state",
                )
            ev = EventLog.new(
                now,
                EventType.DEPLOYMENT_DELETED,
                project_id,
                rec.uid,
                deployment_id=deployment_id,
                from_state=rec.state.value,
                to_state="deleted",
            )
            writes = [self._repo.deployment_delete(rec)]
            writes += [self._repo.route_delete(r) for r in routes]
            writes += self._events.writes([ev])
            try:
                self._repo.store.transact(writes)
            except ConditionFailed:
                continue
            break
        else:
            raise Conflict(f"deployment '{deployment_id}' keeps changing; retry", code="concurrent_update")
        self._events.publish([ev])
        node_ids = {r.node_id for r in routes}
        self._nudge(n.url for n in self._repo.list_nodes() if n.node_id in node_ids)
        if routes:
            self._place(now)
