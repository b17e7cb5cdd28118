"""Worker nodes: registration, sync (heartbeat + route reports → desired assignments), and the
sweep that marks silent nodes lost and re-plans their allocations elsewhere."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Literal

from modelfleet.adapters.errors import ConditionFailed
from modelfleet.adapters.s3 import ArtifactStore
from modelfleet.control.errors import Conflict, Forbidden, NotFound
from modelfleet.control.events import EventLog
from modelfleet.control.nlp import nlp_task
from modelfleet.control.planning import Planner, derive, route_event, with_state
from modelfleet.control.repository import Repository
from modelfleet.core.lifecycle import DeploymentState, NodeState, RoutingState, can_transition, transition
from schemas.deployments import DeploymentRecord, RouteRecord
from schemas.events import EventType, StatusEvent
from schemas.keys import Principal, Role
from schemas.models import ModelRecord
from schemas.nodes import (
    ArtifactSource,
    AssignedModel,
    Assignment,
    NodeRecord,
    NodeRegister,
    NodeSync,
    NodeView,
    RouteReport,
    SyncResponse,
)
from schemas.projects import SYSTEM_PROJECT

log = logging.getLogger(__name__)


def assigned_model(model: ModelRecord, artifacts: ArtifactStore, url_ttl_seconds: int) -> AssignedModel:
    """What a process that loads the model gets: its files as presigned URLs with their digests
    (nodes through their sync, batch workers directly)."""
    return AssignedModel(
        model_id=model.model_id,
        format=model.format,
        entry_file=model.entry_file,
        signature=model.signature,
        files=[
            ArtifactSource(
                name=a.name,
                sha256=a.sha256,
                size_bytes=a.size_bytes,
                url=artifacts.presign_get(a.s3_key, url_ttl_seconds),
            )
            for a in model.artifacts
        ],
    )


DELETE: Literal["delete"] = "delete"
RouteUpdate = tuple[RoutingState, int, str]


def route_update(r: RouteRecord, rep: RouteReport | None) -> RouteUpdate | Literal["delete"] | None:
    """What a node's report (or its silence) does to one of its routes: None (nothing),
    DELETE (a stopping route the node has unloaded), or the new (state, allocations, reason)."""
    if r.routing_state == RoutingState.STOPPING:
        return DELETE if rep is None or rep.routing_state == RoutingState.STOPPED else None
    if rep is None:
        if r.routing_state != RoutingState.STARTED:
            return None
        new: RouteUpdate = (RoutingState.STARTING, 0, "node no longer serves it")
    else:
        state = RoutingState.STARTING if rep.routing_state == RoutingState.STOPPED else rep.routing_state
        if not can_transition(r.routing_state, state):
            log.warning(
                "route %s: reported %s -> %s; ignored", r.route_key, r.routing_state.value, state.value
            )
            return None
        new = (state, rep.current_allocations, rep.reason)
    return None if new == (r.routing_state, r.current_allocations, r.reason) else new


class NodeService:
    def __init__(
        self,
        repo: Repository,
        events: EventLog,
        planner: Planner,
        artifacts: ArtifactStore,
        heartbeat_interval: float,
        lost_after: float,
        url_ttl: int,
    ) -> None:
        self._repo = repo
        self._events = events
        self._planner = planner
        self._artifacts = artifacts
        self._interval = heartbeat_interval
        self._lost_after = lost_after
        self._url_ttl = url_ttl
        self._models: dict[tuple[str, str], ModelRecord] = {}  # READY models never change
        self._models_lock = threading.Lock()

    @staticmethod
    def _check(principal: Principal) -> None:
        """Cloud nodes serve every project (their sync answer holds every project's models), so
        only the platform's own keys (project `_system`) may act as one; a project's admin may not."""
        if not principal.has(Role.NODE) or principal.project_id != SYSTEM_PROJECT:
            raise Forbidden("this key may not act as a node", code="node_role_required")

    def register(self, principal: Principal, req: NodeRegister, now: datetime) -> NodeRecord:
        self._check(principal)
        existing = self._repo.get_node(req.node_id)
        events: list[StatusEvent] = []
        if existing is None:
            rec = NodeRecord(
                node_id=req.node_id,
                kind=req.kind,
                processors=req.processors,
                memory_bytes=req.memory_bytes,
                url=req.url,
                data_url=req.data_url,
                state=NodeState.READY,
                pool=req.pool,
                registered_at=now,
                updated_at=now,
            )
            expect: int | None = -1
            events.append(self._node_event(now, rec, None, NodeState.READY, "registered"))
        else:
            if existing.state == NodeState.DEREGISTERED:
                raise Conflict(f"node '{req.node_id}' was deregistered", code="node_deregistered")
            rec = existing.model_copy(
                update={
                    "kind": req.kind,
                    "processors": req.processors,
                    "memory_bytes": req.memory_bytes,
                    "url": req.url,
                    "data_url": req.data_url,
                    "pool": req.pool,
                    "state": transition(existing.state, NodeState.READY),
                    "updated_at": now,
                    "version_no": existing.version_no + 1,
                }
            )
            expect = existing.version_no
            if existing.state != NodeState.READY:
                events.append(self._node_event(now, rec, existing.state, NodeState.READY, "registered again"))
        self._save_ready(rec, expect, events, now)
        return rec

    def _save_ready(
        self, rec: NodeRecord, expect: int | None, events: list[StatusEvent], now: datetime
    ) -> None:
        """Commit a (re)ready node with its events, then re-plan: it brings capacity."""
        # The heartbeat first: a sweep running meanwhile must not see a READY node without one.
        self._repo.touch_heartbeat(rec.node_id, now, timedelta(seconds=self._lost_after * 10))
        try:
            self._repo.store.transact([self._repo.node_write(rec, expect), *self._events.writes(events)])
        except ConditionFailed:
            raise Conflict(
                f"node '{rec.node_id}' changed meanwhile; retry", code="concurrent_update"
            ) from None
        self._events.publish(events)
        self._planner.replan(now)

    def _node_event(
        self, now: datetime, rec: NodeRecord, old: NodeState | None, new: NodeState, reason: str
    ) -> StatusEvent:
        return EventLog.new(
            now,
            EventType.NODE_STATE_CHANGED,
            rec.project_id or "_system",
            f"node:{rec.node_id}",
            node_id=rec.node_id,
            from_state=old.value if old else None,
            to_state=new.value,
            reason=reason,
        )

    def list_nodes(self, now: datetime) -> list[NodeView]:
        beats = self._repo.heartbeats()
        return [
            NodeView(
                node_id=n.node_id,
                kind=n.kind,
                processors=n.processors,
                memory_bytes=n.memory_bytes,
                url=n.url,
                state=n.state,
                pool=n.pool,
                registered_at=n.registered_at,
                last_heartbeat=datetime.fromtimestamp(beats[n.node_id], tz=now.tzinfo)
                if n.node_id in beats
                else None,
            )
            for n in sorted(self._repo.list_nodes(), key=lambda n: n.node_id)
        ]

    # --- sync -----------------------------------------------------------------------------------
    def sync(self, principal: Principal, node_id: str, req: NodeSync, now: datetime) -> SyncResponse:
        self._check(principal)
        node = self._repo.get_node(node_id)
        if node is None:
            raise NotFound("node", node_id)
        stats = {f"{r.deployment_uid}/{r.version_id}": r.stats for r in req.routes if r.stats is not None}
        self._repo.touch_heartbeat(node_id, now, timedelta(seconds=self._lost_after * 10), stats)
        if node.state == NodeState.LOST:  # it came back: schedulable again
            rec = node.model_copy(
                update={
                    "state": transition(node.state, NodeState.READY),
                    "updated_at": now,
                    "version_no": node.version_no + 1,
                }
            )
            self._save_ready(
                rec,
                node.version_no,
                [self._node_event(now, rec, node.state, NodeState.READY, "heartbeats resumed")],
                now,
            )
        routes = self._apply_reports(node_id, req.routes, now)
        return SyncResponse(
            node_id=node_id,
            state=NodeState.READY,
            heartbeat_interval_seconds=self._interval,
            assignments=self._assignments(routes),
        )

    def _apply_reports(self, node_id: str, reports: list[RouteReport], now: datetime) -> list[RouteRecord]:
        """Apply the node's reports; returns its routes (re-read only if something changed)."""
        by_uid: dict[str, dict[str, RouteReport]] = defaultdict(dict)
        for rep in reports:
            by_uid[rep.deployment_uid][rep.version_id] = rep
        mine = self._repo.node_routes(node_id)
        # Most heartbeats change nothing: only deployments with a route to update are read again.
        changed = sorted(
            {
                r.deployment_uid
                for r in mine
                if route_update(r, by_uid.get(r.deployment_uid, {}).get(r.version_id)) is not None
            }
        )
        for uid in changed:
            for _ in range(4):
                if self._apply_for_deployment(uid, node_id, by_uid.get(uid, {}), now):
                    break
        return self._repo.node_routes(node_id) if changed else mine

    def _apply_for_deployment(
        self, uid: str, node_id: str, reports: dict[str, RouteReport], now: datetime
    ) -> bool:
        d = self._repo.get_deployment_by_uid(uid)
        if d is None:
            return True
        upserts: list[RouteRecord] = []
        deletes: list[RouteRecord] = []
        events: list[StatusEvent] = []
        kept: list[RouteRecord] = []
        for r in self._repo.routes(uid):
            update = route_update(r, reports.get(r.version_id)) if r.node_id == node_id else None
            if update is None:
                kept.append(r)
            elif isinstance(update, str):  # DELETE
                deletes.append(r)
                events.append(route_event(now, r, r.routing_state.value, RoutingState.STOPPED.value))
            else:
                state, current, reason = update
                new = r.model_copy(
                    update={
                        "routing_state": state,
                        "current_allocations": current,
                        "reason": reason,
                        "updated_at": now,
                    }
                )
                upserts.append(new)
                if state != r.routing_state:
                    events.append(route_event(now, new, r.routing_state.value, state.value))
                kept.append(new)
        if not upserts and not deletes:
            return True
        new_state, new_reason = derive(d, kept, now, d.reason if d.state == DeploymentState.PENDING else "")
        updated = with_state(d, new_state, new_reason, now, events)
        writes = [self._repo.deployment_write(updated, expect=d.version_no)]
        writes += [self._repo.route_write(r) for r in upserts]
        writes += [self._repo.route_delete(r) for r in deletes]
        writes += self._events.writes(events)
        try:
            self._repo.store.transact(writes)
        except ConditionFailed:
            return False
        self._events.publish(events)
        if deletes:
            self._planner.replan(now)
        return True

    def _model(self, project_id: str, model_id: str) -> ModelRecord | None:
        key = (project_id, model_id)
        with self._models_lock:
            hit = self._models.get(key)
        if hit is None:
            hit = self._repo.get_model(project_id, model_id)
            if hit is not None:
                with self._models_lock:
                    self._models[key] = hit
        return hit

    def _assignments(self, routes: list[RouteRecord]) -> list[Assignment]:
        out = []
        deployments: dict[str, DeploymentRecord | None] = {}
        for r in routes:
            if r.routing_state == RoutingState.STOPPING:
                continue
            if r.deployment_uid not in deployments:
                deployments[r.deployment_uid] = self._repo.get_deployment_by_uid(r.deployment_uid)
            d = deployments[r.deployment_uid]
            v = d.version(r.version_id) if d else None
            model = self._model(r.project_id, v.model_id) if v else None
            if d is None or v is None or model is None:
                continue
            out.append(
                Assignment(
                    deployment_uid=d.uid,
                    project_id=d.project_id,
                    deployment_id=d.deployment_id,
                    version_id=v.version_id,
                    target_allocations=r.target_allocations,
                    threads_per_allocation=v.threads_per_allocation,
                    priority=d.priority,
                    queue_capacity=d.queue_capacity,
                    cache_size_bytes=v.cache_size_bytes if v.cache_size_bytes is not None else v.model_bytes,
                    max_batch_size=d.max_batch_size,
                    max_batch_delay_ms=d.max_batch_delay_ms,
                    nlp=nlp_task(model),
                    model=assigned_model(model, self._artifacts, self._url_ttl),
                )
            )
        return out

    # --- sweep ----------------------------------------------------------------------------------
    def sweep(self, now: datetime, silent_since: datetime | None = None) -> list[str]:
        """Mark nodes whose heartbeats stopped as lost, time out slow deploys, re-plan.

        `silent_since`: nodes with no heartbeat since that instant are lost at once (the local
        platform passes its own start: the previous run's nodes died with it).
        """
        beats = self._repo.heartbeats()
        lost = []
        for n in self._repo.list_nodes():
            if n.state != NodeState.READY:
                continue
            beat = beats.get(n.node_id, 0.0)
            if silent_since is not None:
                if beat >= silent_since.timestamp():
                    continue
            elif now.timestamp() - max(beat, n.updated_at.timestamp()) <= self._lost_after:
                continue
            rec = n.model_copy(
                update={
                    "state": transition(n.state, NodeState.LOST),
                    "updated_at": now,
                    "version_no": n.version_no + 1,
                }
            )
            ev = self._node_event(
                now, rec, n.state, NodeState.LOST, f"no heartbeat for more than {self._lost_after:g}s"
            )
            try:
                self._repo.store.transact(
                    [self._repo.node_write(rec, n.version_no), *self._events.writes([ev])]
                )
            except ConditionFailed:
                continue
            self._events.publish([ev])
            lost.append(n.node_id)
        self._planner.replan(now)
        return lost
