"""Services (`/v1/{project_id}/services`) on the core: a service is a `DeploymentRecord` of kind
SERVICE; what only the face knows (its name, configs, schedule, notification, status, rollout)
lives in `record.face`.

Besides create, this is the service's side of the scheduler's `services` task (`tick`): each tick
it advances rollouts (control/rollouts.py), derives every service's status from the core state
and its routes (core/service_state.py) and records + publishes each change (with its SMN
notification, control/notifications.py), and stops services whose auto-stop time has come.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from modelfleet.adapters.dynamo import ABSENT
from modelfleet.adapters.errors import AdapterError, ConditionFailed
from modelfleet.adapters.scheduler import OneTimeSchedules
from modelfleet.control.deployments import DeploymentService
from modelfleet.control.errors import Conflict
from modelfleet.control.events import EventLog
from modelfleet.control.notifications import Notifications
from modelfleet.control.planning import Planner
from modelfleet.control.repository import Repository
from modelfleet.control.rollouts import RolloutRunner
from modelfleet.core.lifecycle import DeploymentState, NodeState, RoutingState
from modelfleet.core.rollout import Decision, Phase
from modelfleet.core.service_state import (
    ServiceState,
    ServiceStatus,
    VersionHealth,
    auto_stop_due,
    derive_service_state,
)
from schemas.deployments import DeploymentKind, DeploymentRecord, RouteRecord
from schemas.events import EventType, StatusEvent
from schemas.stats import InferenceStats

log = logging.getLogger(__name__)
REAL_TIME = "real-time"


def is_service(rec: DeploymentRecord) -> bool:
    return rec.kind == DeploymentKind.SERVICE


def health(rec: DeploymentRecord, routes: Iterable[RouteRecord]) -> list[VersionHealth]:
    ready: dict[str, int] = defaultdict(int)
    failed: dict[str, int] = defaultdict(int)
    for r in routes:
        if r.routing_state == RoutingState.STARTED:
            ready[r.version_id] += min(r.current_allocations, r.target_allocations)
        elif r.routing_state == RoutingState.FAILED:
            failed[r.version_id] += 1
    return [
        VersionHealth(v.version_id, v.weight, v.allocations, ready[v.version_id], failed[v.version_id])
        for v in rec.versions
    ]


def service_status(rec: DeploymentRecord, routes: list[RouteRecord]) -> ServiceStatus:
    """The status a real-time service is in now (what GET shows; the tick records changes)."""
    versions = health(rec, routes)
    if rec.state in (DeploymentState.STOPPING, DeploymentState.STOPPED):
        base = derive_service_state(rec.state, rec.reason, versions, False)
        return ServiceStatus(base.state, str(rec.face.get("stop_reason") or ""))
    rolling = isinstance(rec.face.get("rollout"), dict) and rec.state == DeploymentState.STARTED
    if rolling and any(v.ready for v in versions):
        # Mid-rollout, instances come and go on purpose: running while any version serves.
        return ServiceStatus(ServiceState.RUNNING, "")
    return derive_service_state(rec.state, rec.reason, versions, bool(rec.face.get("running_since")))


class ServiceControl:
    def __init__(
        self,
        repo: Repository,
        events: EventLog,
        planner: Planner,
        deployments: DeploymentService,
        nudge: Callable[[Iterable[str]], None],
        notifications: Notifications,
        seconds_per_minute: float = 60.0,
        schedules: OneTimeSchedules | None = None,
    ) -> None:
        self._repo = repo
        self._events = events
        self._planner = planner
        self._deployments = deployments
        self._nudge = nudge
        self.notifications = notifications
        self.seconds_per_minute = seconds_per_minute
        self._schedules = schedules  # the cloud's one-time auto-stop schedules (None: sweep only)
        self.rollouts = RolloutRunner(repo, events, planner, nudge, self._rollout_finished)

    # --- what validation needs ------------------------------------------------------------------
    def pools(self) -> frozenset[str]:
        """Named node pools with at least one node that is not deregistered."""
        return frozenset(
            n.pool for n in self._repo.list_nodes() if n.pool and n.state != NodeState.DEREGISTERED
        )

    def max_instances(self, project_id: str) -> int:
        project = self._repo.get_project(project_id)
        return project.max_instances_per_version if project is not None else 5

    # --- writes -----------------------------------------------------------------------------------
    def create(self, rec: DeploymentRecord, now: datetime) -> DeploymentRecord:
        """Commit a new service record (pending) with its events, then place it."""
        events = [
            EventLog.new(
                now,
                EventType.DEPLOYMENT_STATE_CHANGED,
                rec.project_id,
                rec.uid,
                deployment_id=rec.deployment_id,
                to_state=rec.state.value,
                reason=rec.reason,
            )
        ]
        try:
            self._repo.store.transact(
                [self._repo.deployment_write(rec, expect=ABSENT), *self._events.writes(events)]
            )
        except ConditionFailed:
            raise Conflict(f"service '{rec.deployment_id}' already exists", code="ModelArts.3503") from None
        self._events.publish(events)
        if rec.state not in (DeploymentState.STOPPED, DeploymentState.STOPPING):
            self.place(now)
        return self._repo.get_deployment(rec.project_id, rec.deployment_id) or rec

    def place(self, now: datetime) -> None:
        changes = self._planner.replan(now)
        nodes = {r.node_id for ch in changes for r in ch.upserts + ch.deletes}
        if nodes:
            self._nudge(n.url for n in self._repo.list_nodes() if n.node_id in nodes)

    def write(self, old: DeploymentRecord, new: DeploymentRecord, events: list[StatusEvent]) -> None:
        """A conditional write of a changed service record with its events (Conflict if raced)."""
        try:
            self._repo.store.transact(
                [self._repo.deployment_write(new, expect=old.version_no), *self._events.writes(events)]
            )
        except ConditionFailed:
            raise Conflict(
                f"service '{old.deployment_id}' changed meanwhile; retry", code="ModelArts.3503"
            ) from None
        self._events.publish(events)

    # --- the scheduler's tick ---------------------------------------------------------------------
    def tick(self, now: datetime) -> dict[str, Any]:
        services = [
            d for d in self._repo.all_deployments() if is_service(d) and d.face.get("infer_type") == REAL_TIME
        ]
        if not services:
            return {"services": 0}
        routes: dict[str, list[RouteRecord]] = defaultdict(list)
        for r in self._repo.all_routes():
            routes[r.deployment_uid].append(r)
        stats = (
            self._repo.node_stats() if any(isinstance(d.face.get("rollout"), dict) for d in services) else {}
        )
        changed = stopped = stepped = 0
        for rec in services:
            try:
                rec, did_step = self._advance(rec, routes[rec.uid], stats, now)
                stepped += did_step
                if did_step:
                    routes[rec.uid] = self._repo.routes(rec.uid)
                changed += self.sync_status(rec, routes[rec.uid], now)
                stopped += self._auto_stop(rec, now)
            except Conflict:
                continue  # raced with a request or a heartbeat: the next tick sees the fresh record
            except Exception:
                log.exception("service %s: tick failed", rec.deployment_id)
        return {
            "services": len(services),
            "status_changes": changed,
            "rollout_steps": stepped,
            "auto_stopped": stopped,
        }

    def _advance(
        self,
        rec: DeploymentRecord,
        routes: list[RouteRecord],
        stats: dict[str, dict[str, InferenceStats]],
        now: datetime,
    ) -> tuple[DeploymentRecord, bool]:
        if not isinstance(rec.face.get("rollout"), dict) or rec.state in (
            DeploymentState.STOPPING,
            DeploymentState.STOPPED,
        ):
            return rec, False
        updated = self.rollouts.tick(rec, routes, stats, now)
        if updated is None:
            return self._repo.get_deployment(rec.project_id, rec.deployment_id) or rec, False
        return self._repo.get_deployment(rec.project_id, rec.deployment_id) or updated, True

    def sync_status(self, rec: DeploymentRecord, routes: list[RouteRecord], now: datetime) -> int:
        """Record (and publish) the service's status if it changed. Returns 1 if it did."""
        status = service_status(rec, routes)
        previous = rec.face.get("status")
        if previous == status.state.value and rec.face.get("status_reason", "") == status.reason:
            return 0
        face = dict(rec.face)
        face["status"] = status.state.value
        face["status_reason"] = status.reason
        if status.state == ServiceState.RUNNING and not face.get("running_since"):
            face["running_since"] = now.isoformat()
        if status.state in (ServiceState.STOPPING, ServiceState.STOPPED):
            face["running_since"] = None
        new = rec.model_copy(update={"face": face, "version_no": rec.version_no + 1, "updated_at": now})
        events: list[StatusEvent] = []
        if previous != status.state.value:
            prev = str(previous) if previous else None
            events = self.notifications.status_events(now, new, prev, status.state, status.reason)
        self.write(rec, new, events)
        self._schedule_stop(new, status.state)
        return 1

    def _schedule_stop(self, rec: DeploymentRecord, state: ServiceState) -> None:
        """Keep the cloud's one-time auto-stop schedule in step (the sweep stays authoritative)."""
        if self._schedules is None or self.stop_after(rec) is None:
            return
        name = f"svc-stop-{rec.uid}"
        due = self.stop_due_at(rec)
        try:
            if state == ServiceState.RUNNING and due is not None:
                self._schedules.put(name, due, {"task": "services"})
            elif state in (ServiceState.STOPPING, ServiceState.STOPPED):
                self._schedules.delete(name)
        except AdapterError as e:
            log.warning("service %s: auto-stop schedule not updated: %s", rec.deployment_id, e)

    def stop_after(self, rec: DeploymentRecord) -> timedelta | None:
        raw = rec.face.get("stop_after")
        if not isinstance(raw, dict):
            return None
        from modelfleet.core.service_state import stop_after

        return stop_after(str(raw["time_unit"]), int(raw["duration"]), self.seconds_per_minute)

    def stop_due_at(self, rec: DeploymentRecord) -> datetime | None:
        after = self.stop_after(rec)
        since = rec.face.get("running_since")
        if after is None or not isinstance(since, str):
            return None
        return datetime.fromisoformat(since) + after

    def _auto_stop(self, rec: DeploymentRecord, now: datetime) -> int:
        if rec.state in (DeploymentState.STOPPING, DeploymentState.STOPPED):
            return 0
        since = rec.face.get("running_since")
        running_since = datetime.fromisoformat(since) if isinstance(since, str) else None
        after = self.stop_after(rec)
        if not auto_stop_due(running_since, after, now):
            return 0
        assert after is not None
        reason = f"stopped by its schedule after {after.total_seconds():g}s of running"
        self.stop(rec.project_id, rec.deployment_id, now, reason)
        return 1

    def stop(self, project_id: str, service_id: str, now: datetime, reason: str) -> DeploymentRecord:
        self._deployments.update(project_id, service_id, now, face={"stop_reason": reason})
        rec = self._deployments.stop(project_id, service_id, now)
        routes = self._repo.routes(rec.uid)
        fresh = self._repo.get_deployment(project_id, service_id) or rec
        with contextlib.suppress(Conflict):  # raced: the next tick records the status
            self.sync_status(fresh, routes, now)
        return fresh

    def _rollout_finished(
        self, rec: DeploymentRecord, decision: Decision, now: datetime
    ) -> list[StatusEvent]:
        """A rolled-back update is a failure the service's owner hears about (event 1), even
        though the service keeps running on its previous versions."""
        if decision.progress.phase != Phase.ROLLED_BACK:
            return []
        status = ServiceState(str(rec.face.get("status") or ServiceState.RUNNING.value))
        reason = f"update rolled back: {decision.progress.reason}"
        evs = self.notifications.status_events(now, rec, status.value, status, reason, event_code=1)
        for e in evs:
            e.detail["update"] = "rolled_back"
        return evs
