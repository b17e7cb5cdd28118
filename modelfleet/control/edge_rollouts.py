"""Fleet rollouts of edge services and the services' state, as the I/O side of
`modelfleet.core.fleet_rollout`: gather each node's observation (heartbeat age, what it reported of
the target model), let the planner decide, then apply its decision in one transaction (rollout, the
service's `node_models`, the running-rollouts index) and recompute the touched nodes' desired states.
Service state changes are written with their event (outbox) and published.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from modelfleet.adapters.errors import ConditionFailed
from modelfleet.control.edge_nodes import online
from modelfleet.control.edge_store import EdgeRepository
from modelfleet.control.events import EventLog
from modelfleet.core import fleet_rollout as fr
from schemas.edge import DeploymentPhase, EdgeNodeStatus, EdgeServiceRecord, RolloutRecord
from schemas.events import EventType, StatusEvent

RefreshDesired = Callable[[str, Iterable[str], datetime], None]


class FleetRollouts:
    def __init__(
        self,
        edge: EdgeRepository,
        events: EventLog,
        offline_after: timedelta,
        refresh_desired: RefreshDesired,
    ) -> None:
        self._edge = edge
        self._events = events
        self.offline_after = offline_after
        self._refresh_desired = refresh_desired

    def tick(self, now: datetime) -> dict[str, int]:
        """Advance every running rollout and refresh the state of services with silent nodes."""
        advanced = 0
        for project_id, rollout_id in self._edge.active_rollouts():
            rollout = self._edge.get_rollout(project_id, rollout_id)
            svc = self._edge.get_service(project_id, rollout.service_id) if rollout else None
            if rollout is None or svc is None or svc.rollout_id != rollout_id:
                self._edge.store.write(self._edge.rollout_marker(project_id, rollout_id, active=False))
                continue
            self.progress(svc, now)
            advanced += 1
        return {"rollouts": advanced, "services": self._sweep_services(now)}

    def _sweep_services(self, now: datetime) -> int:
        """Services whose state no longer matches their nodes (nodes gone silent, or back)."""
        changed = 0
        for project_id in self._projects_with_services():
            statuses = self._edge.list_status(project_id)
            for svc in self._edge.list_services(project_id):
                if self.refresh_state(svc, statuses, now):
                    changed += 1
        return changed

    def _projects_with_services(self) -> set[str]:
        return self._edge.service_projects()

    def progress(self, svc: EdgeServiceRecord, now: datetime) -> None:
        """Advance the service's running rollout (if any), then refresh its state."""
        rollout = self._edge.get_rollout(svc.project_id, svc.rollout_id) if svc.rollout_id else None
        statuses = self._edge.list_status(svc.project_id)
        if rollout is not None and rollout.state is not fr.RolloutState.ABORTED:
            svc = self._advance(svc, rollout, statuses, now) or svc
        fresh = self._edge.get_service(svc.project_id, svc.service_id)
        if fresh is not None:
            self.refresh_state(fresh, statuses, now)

    def _advance(
        self,
        svc: EdgeServiceRecord,
        rollout: RolloutRecord,
        statuses: dict[str, EdgeNodeStatus],
        now: datetime,
    ) -> EdgeServiceRecord | None:
        by_node = {e.node_id: e for e in rollout.entries}
        observations = {
            n: self._observe(svc.service_id, e.to_model, statuses.get(n), now) for n, e in by_node.items()
        }
        p = rollout.policy
        step = fr.advance(
            [fr.Entry(e.node_id, e.progress, e.wave, e.reason, e.since) for e in rollout.entries],
            observations,
            fr.Policy(
                p.max_unavailable,
                p.abort_failure_percent,
                p.abort_min_nodes,
                timedelta(seconds=p.node_timeout_seconds),
            ),
            now,
            rollout.state,
        )
        entries = [
            by_node[e.node_id].model_copy(
                update={"progress": e.progress, "wave": e.wave, "reason": e.reason, "since": e.since}
            )
            for e in step.entries
        ]
        if entries == rollout.entries and step.state is rollout.state:
            return None
        node_models = dict(svc.node_models)
        for n in step.assign:
            node_models[n] = by_node[n].to_model
        for n in step.revert:
            before = by_node[n].from_model
            if before is None:
                node_models.pop(n, None)
            else:
                node_models[n] = before
        new_rollout = rollout.model_copy(
            update={
                "entries": entries,
                "state": step.state,
                "reason": step.reason or rollout.reason,
                "updated_at": now,
                "version_no": rollout.version_no + 1,
            }
        )
        writes = [self._edge.rollout_write(new_rollout, rollout.version_no)]
        updated = svc
        if node_models != svc.node_models:
            update: dict[str, object] = {
                "node_models": node_models,
                "updated_at": now,
                "version_no": svc.version_no + 1,
            }
            if step.state is fr.RolloutState.ABORTED:
                update["reason"] = f"rollout aborted: {step.reason}"
            updated = svc.model_copy(update=update)
            writes.append(self._edge.service_write(updated, svc.version_no))
        if step.state is not fr.RolloutState.IN_PROGRESS:
            writes.append(self._edge.rollout_marker(svc.project_id, rollout.rollout_id, active=False))
        try:
            self._edge.store.transact(writes)
        except ConditionFailed:
            return None  # another report or tick advanced it meanwhile
        self._refresh_desired(svc.project_id, [*step.assign, *step.revert], now)
        return updated

    def _observe(
        self, service_id: str, model_id: str, status: EdgeNodeStatus | None, now: datetime
    ) -> fr.Observation:
        if status is None:
            return fr.Observation(online=False)
        up = online(status, now, self.offline_after)
        rep = next(
            (d for d in status.deployments if d.service_id == service_id and d.model_id == model_id), None
        )
        if rep is None:
            return fr.Observation(online=up)
        if rep.state is DeploymentPhase.STARTED and rep.serving_model_id in (None, model_id):
            return fr.Observation(up, fr.NodeHealth.HEALTHY)
        if rep.state is DeploymentPhase.FAILED:
            return fr.Observation(up, fr.NodeHealth.FAILED, rep.reason)
        return fr.Observation(up, fr.NodeHealth.STARTING)

    def serving(
        self, svc: EdgeServiceRecord, statuses: dict[str, EdgeNodeStatus], now: datetime
    ) -> list[tuple[str, str, fr.NodeServing, str]]:
        out = []
        for node_id, model_id in sorted(svc.node_models.items()):
            status = statuses.get(node_id)
            rep = None
            if status is not None:
                rep = next(
                    (
                        d
                        for d in status.deployments
                        if d.service_id == svc.service_id and d.model_id == model_id
                    ),
                    None,
                )
            if not online(status, now, self.offline_after):
                state, reason = fr.NodeServing.OFFLINE, "no heartbeat"
            elif (
                rep is not None and rep.state is DeploymentPhase.STARTED and rep.serving_model_id == model_id
            ):
                state, reason = fr.NodeServing.RUNNING, ""
            elif rep is not None and rep.state is DeploymentPhase.FAILED:
                state, reason = fr.NodeServing.FAILED, rep.reason
            else:
                state, reason = fr.NodeServing.STARTING, ""
            out.append((node_id, model_id, state, reason))
        return out

    def refresh_state(
        self, svc: EdgeServiceRecord, statuses: dict[str, EdgeNodeStatus], now: datetime
    ) -> bool:
        if svc.stopped:
            return False
        serving = self.serving(svc, statuses, now)
        rollout_active = False
        if svc.rollout_id:
            r = self._edge.get_rollout(svc.project_id, svc.rollout_id)
            rollout_active = r is not None and r.state is fr.RolloutState.IN_PROGRESS
        state = fr.aggregate_service_state([s for _, _, s, _ in serving], rollout_active)
        reasons = sorted({f"{n}: {r}" for n, _, s, r in serving if s is fr.NodeServing.FAILED and r})
        reason = "; ".join(reasons)[:1000] if state is not fr.ServiceState.RUNNING else ""
        if svc.reason.startswith("rollout aborted") and state is not fr.ServiceState.RUNNING:
            reason = svc.reason
        if state is svc.state and reason == svc.reason:
            return False
        updated = svc.model_copy(
            update={"state": state, "reason": reason, "updated_at": now, "version_no": svc.version_no + 1}
        )
        event = self.event(updated, svc.state.value, state.value, reason, now)
        try:
            self._edge.store.transact(
                [self._edge.service_write(updated, svc.version_no), *self._events.writes([event])]
            )
        except ConditionFailed:
            return False
        self._events.publish([event])
        return True

    @staticmethod
    def event(
        svc: EdgeServiceRecord, before: str | None, after: str, reason: str, now: datetime
    ) -> StatusEvent:
        return EventLog.new(
            now,
            EventType.EDGE_SERVICE_STATE_CHANGED,
            svc.project_id,
            svc.service_id,
            deployment_id=svc.name,
            from_state=before,
            to_state=after,
            reason=reason,
            detail={"service_id": svc.service_id, "infer_type": "edge"},
        )
