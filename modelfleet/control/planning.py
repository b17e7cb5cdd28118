"""The planning executor: gather state → pure planner → apply its decisions.

`core.placement.plan` decides; this module only reads the snapshot it needs, turns the plan
into route writes per deployment, derives each deployment's state, and commits every changed
deployment in its own transaction (conditional on the deployment's version). A lost race is
retried on a fresh snapshot.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from modelfleet.adapters.errors import ConditionFailed
from modelfleet.control.events import EventLog
from modelfleet.control.repository import Repository
from modelfleet.core.lifecycle import (
    DeploymentState,
    RouteStatus,
    RoutingState,
    derive_deployment_state,
    transition,
)
from modelfleet.core.placement import MemoryProfile, NodeCapacity, PlacementContext, PlacementRequest, plan
from schemas.deployments import DeploymentRecord, RouteRecord
from schemas.events import EventType, StatusEvent
from schemas.nodes import NodeKind, NodeRecord

log = logging.getLogger(__name__)

INACTIVE = (DeploymentState.STOPPING, DeploymentState.STOPPED)


@dataclass
class Snapshot:
    nodes: list[NodeRecord]
    heartbeats: dict[str, float]
    deployments: list[DeploymentRecord]
    routes: dict[str, list[RouteRecord]] = field(default_factory=dict)

    def node_is_live(self, node: NodeRecord, now: datetime, lost_after: float) -> bool:
        from modelfleet.core.lifecycle import NodeState

        seen = self.heartbeats.get(node.node_id)
        return node.state == NodeState.READY and seen is not None and now.timestamp() - seen <= lost_after


def load_snapshot(repo: Repository) -> Snapshot:
    """Deployments are read before routes: every route write bumps its deployment's version, so a
    route changed after this read makes the commit's version check fail (and the plan retry)."""
    deployments = repo.all_deployments()
    routes: dict[str, list[RouteRecord]] = defaultdict(list)
    for r in repo.all_routes():
        routes[r.deployment_uid].append(r)
    return Snapshot(repo.list_nodes(), repo.heartbeats(), deployments, dict(routes))


def version_pool(d: DeploymentRecord, version_id: str) -> str | None:
    """The named node pool a version must run in (services choose one per config entry);
    None = the shared pool."""
    pools = d.face.get("pools")
    pool = pools.get(version_id) if isinstance(pools, dict) else None
    return str(pool) if pool else None


def unit_id(d: DeploymentRecord, version_id: str) -> str:
    return f"{d.uid}/{version_id}"


def placement_context(snap: Snapshot, now: datetime, lost_after: float) -> PlacementContext:
    nodes = [
        NodeCapacity(
            node_id=n.node_id,
            processors=n.processors,
            memory_bytes=n.memory_bytes,
            pool=n.pool,
            schedulable=snap.node_is_live(n, now, lost_after),
        )
        for n in snap.nodes
        if n.kind == NodeKind.CLOUD
    ]
    requests = []
    for d in snap.deployments:
        if d.state in INACTIVE:
            continue
        routes = snap.routes.get(d.uid, [])
        for v in d.versions:
            current = {
                r.node_id: r.target_allocations
                for r in routes
                if r.version_id == v.version_id and r.routing_state != RoutingState.STOPPING
            }
            requests.append(
                PlacementRequest(
                    unit_id=unit_id(d, v.version_id),
                    target_allocations=v.allocations,
                    threads_per_allocation=v.threads_per_allocation,
                    memory=MemoryProfile(
                        model_bytes=v.model_bytes,
                        per_deployment_memory_bytes=v.per_deployment_memory_bytes,
                        per_allocation_memory_bytes=v.per_allocation_memory_bytes,
                        cache_size_bytes=v.cache_size_bytes,
                    ),
                    priority=d.priority,
                    current=current,
                    pool=version_pool(d, v.version_id),
                )
            )
    return PlacementContext(now=now, nodes=nodes, requests=requests)


@dataclass
class Change:
    deployment: DeploymentRecord  # the new record (version bumped)
    expect: int
    upserts: list[RouteRecord]
    deletes: list[RouteRecord]
    events: list[StatusEvent]


def derive(
    d: DeploymentRecord, routes: list[RouteRecord], now: datetime, unplaced_reason: str = ""
) -> tuple[DeploymentState, str]:
    timed_out = (
        d.state == DeploymentState.STARTING
        and (now - d.state_since).total_seconds() > d.deploy_timeout_seconds
    )
    derived = derive_deployment_state(
        d.state,
        [RouteStatus(r.routing_state, r.current_allocations, r.target_allocations, r.reason) for r in routes],
        unplaced_reason=unplaced_reason,
        deploy_timed_out=timed_out,
        scaled_to_zero=all(v.allocations == 0 for v in d.versions),
    )
    return derived.state, derived.reason


def with_state(
    d: DeploymentRecord, state: DeploymentState, reason: str, now: datetime, events: list[StatusEvent]
) -> DeploymentRecord:
    """A copy of `d` in `state` (version bumped), appending the state-change event if it changed."""
    update: dict[str, object] = {"version_no": d.version_no + 1, "updated_at": now, "reason": reason}
    if state != d.state:
        transition(d.state, state)
        update["state"] = state
        update["state_since"] = now
        if state == DeploymentState.STARTED and d.started_at is None:
            update["started_at"] = now
        events.append(
            EventLog.new(
                now,
                EventType.DEPLOYMENT_STATE_CHANGED,
                d.project_id,
                d.uid,
                deployment_id=d.deployment_id,
                from_state=d.state.value,
                to_state=state.value,
                reason=reason,
            )
        )
    return d.model_copy(update=update)


def route_event(now: datetime, r: RouteRecord, from_state: str | None, to_state: str) -> StatusEvent:
    return EventLog.new(
        now,
        EventType.ROUTE_STATE_CHANGED,
        r.project_id,
        r.deployment_uid,
        deployment_id=r.deployment_id,
        node_id=r.node_id,
        from_state=from_state,
        to_state=to_state,
        reason=r.reason,
        detail={"version_id": r.version_id},
    )


def plan_changes(snap: Snapshot, now: datetime, lost_after: float) -> list[Change]:
    ctx = placement_context(snap, now, lost_after)
    result = plan(ctx)
    changes = []
    for d in snap.deployments:
        if d.state in INACTIVE:
            continue
        old = {r.route_key: r for r in snap.routes.get(d.uid, [])}
        new: dict[str, RouteRecord] = {}
        reasons = []
        for v in d.versions:
            placement = result.placements.get(unit_id(d, v.version_id))
            if placement is None:
                continue
            if placement.reason:
                reasons.append(placement.reason)
            for node_id, n in placement.allocations.items():
                key = f"{v.version_id}#{node_id}"
                prev = old.get(key)
                if prev is not None and prev.routing_state != RoutingState.STOPPING:
                    new[key] = (
                        prev
                        if prev.target_allocations == n
                        else prev.model_copy(update={"target_allocations": n, "updated_at": now})
                    )
                else:
                    new[key] = RouteRecord(
                        deployment_uid=d.uid,
                        project_id=d.project_id,
                        deployment_id=d.deployment_id,
                        version_id=v.version_id,
                        node_id=node_id,
                        target_allocations=n,
                        updated_at=now,
                    )
        upserts = [r for k, r in new.items() if old.get(k) != r]
        deletes = [r for k, r in old.items() if k not in new]
        events = [
            route_event(now, r, None, RoutingState.STARTING.value) for r in upserts if r.route_key not in old
        ]
        events += [route_event(now, r, r.routing_state.value, RoutingState.STOPPED.value) for r in deletes]
        state, reason = derive(d, list(new.values()), now, "; ".join(dict.fromkeys(reasons)))
        if not upserts and not deletes and state == d.state and reason == d.reason:
            continue
        updated = with_state(d, state, reason, now, events)
        changes.append(Change(updated, d.version_no, upserts, deletes, events))
    return changes


class Planner:
    def __init__(self, repo: Repository, events: EventLog, lost_after_seconds: float) -> None:
        self._repo = repo
        self._events = events
        self._lost_after = lost_after_seconds

    def replan(self, now: datetime, attempts: int = 4) -> list[Change]:
        """Place every active deployment; returns the committed changes."""
        committed: list[Change] = []
        for _ in range(attempts):
            snap = load_snapshot(self._repo)
            lost_race = False
            for ch in plan_changes(snap, now, self._lost_after):
                if self.commit(ch):
                    committed.append(ch)
                else:
                    lost_race = True
            if not lost_race:
                break
        return committed

    def commit(self, ch: Change) -> bool:
        writes = [self._repo.deployment_write(ch.deployment, expect=ch.expect)]
        writes += [self._repo.route_write(r) for r in ch.upserts]
        writes += [self._repo.route_delete(r) for r in ch.deletes]
        writes += self._events.writes(ch.events)
        try:
            self._repo.store.transact(writes)
        except ConditionFailed:
            log.info("deployment %s changed meanwhile; re-planning", ch.deployment.deployment_id)
            return False
        self._events.publish(ch.events)
        return True
