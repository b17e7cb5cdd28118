"""The I/O side of rolling upgrades and canaries: read what the nodes report, let
`core.rollout.next_step` decide, write the versions' allocations and weights, re-plan.

The rollout (its plan and progress) lives in the service's record (`face["rollout"]`), so any
scheduler tick, in any process, continues it; a lost optimistic race is simply retried on the
next tick. Weight changes are published as `deployment.updated`, which invalidates the gateways'
routing tables, so traffic follows each step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from modelfleet.adapters.errors import ConditionFailed
from modelfleet.control.events import EventLog
from modelfleet.control.planning import Planner
from modelfleet.control.repository import Repository
from modelfleet.core.lifecycle import RoutingState
from modelfleet.core.rollout import (
    Counters,
    Decision,
    Observed,
    Phase,
    Plan,
    Policy,
    Progress,
    Slot,
    Strategy,
    next_step,
)
from schemas.deployments import DeploymentRecord, RouteRecord
from schemas.events import EventType, StatusEvent
from schemas.stats import InferenceStats


def dump_rollout(plan: Plan, progress: Progress) -> dict[str, Any]:
    return {
        "plan": {
            "old": {v: [s.allocations, s.weight] for v, s in plan.old.items()},
            "new": {v: [s.allocations, s.weight] for v, s in plan.new.items()},
            "policy": {
                **asdict(plan.policy),
                "strategy": plan.policy.strategy.value,
                "steps": list(plan.policy.steps),
            },
        },
        "progress": dump_progress(progress),
    }


def dump_progress(p: Progress) -> dict[str, Any]:
    return {
        "phase": p.phase.value,
        "since": p.since.isoformat(),
        "started_at": p.started_at.isoformat(),
        "step": p.step,
        "baseline": {key: _dump_counters(c) for key, c in p.baseline.items()},
        "floor_at_start": p.floor_at_start,
        "reason": p.reason,
    }


def _dump_counters(c: Counters) -> dict[str, Any]:
    return {"requests": c.requests, "errors": c.errors, "time_ms": c.time_ms, "latency": list(c.latency)}


def _load_baseline(raw: Mapping[str, Any]) -> dict[str, Counters]:
    """Per route. A rollout stored before baselines were per route kept one sum (`requests` at the
    top): it is read as empty, so the step counts the new versions' routes from their start,
    which for a canary's fresh versions (no traffic before the first step) is nearly the same."""
    if "requests" in raw:
        return {}
    return {
        key: Counters(int(c["requests"]), int(c["errors"]), float(c["time_ms"]), tuple(c.get("latency", ())))
        for key, c in raw.items()
    }


def load_rollout(raw: Mapping[str, Any]) -> tuple[Plan, Progress]:
    plan_raw, prog = raw["plan"], raw["progress"]
    pol = dict(plan_raw["policy"])
    if "max_latency_ms" in pol:  # stored before the gate judged p95 (it judged the mean)
        pol["max_p95_latency_ms"] = pol.pop("max_latency_ms")
    policy = Policy(**{**pol, "strategy": Strategy(pol["strategy"]), "steps": tuple(pol["steps"])})
    plan = Plan(
        old={v: Slot(int(a), int(w)) for v, (a, w) in plan_raw["old"].items()},
        new={v: Slot(int(a), int(w)) for v, (a, w) in plan_raw["new"].items()},
        policy=policy,
    )
    progress = Progress(
        phase=Phase(prog["phase"]),
        since=datetime.fromisoformat(prog["since"]),
        started_at=datetime.fromisoformat(prog["started_at"]),
        step=int(prog["step"]),
        baseline=_load_baseline(prog["baseline"]),
        floor_at_start=prog.get("floor_at_start"),
        reason=str(prog.get("reason", "")),
    )
    return plan, progress


def observe(rec: DeploymentRecord, routes: Iterable[RouteRecord]) -> dict[str, Observed]:
    ready: dict[str, int] = {}
    failed: dict[str, int] = {}
    for r in routes:
        if r.routing_state == RoutingState.STARTED:
            ready[r.version_id] = ready.get(r.version_id, 0) + min(
                r.current_allocations, r.target_allocations
            )
        elif r.routing_state == RoutingState.FAILED:
            failed[r.version_id] = failed.get(r.version_id, 0) + 1
    return {
        v.version_id: Observed(
            v.allocations, v.weight, ready.get(v.version_id, 0), failed.get(v.version_id, 0)
        )
        for v in rec.versions
    }


def counters_of(
    uid: str, versions: Iterable[str], stats: Mapping[str, Mapping[str, InferenceStats]]
) -> dict[str, Counters]:
    """The versions' cumulative counters per route ("<node id>/<version id>"), as the nodes'
    last heartbeats report them; `core.rollout.since` differences two such readings."""
    wanted = set(versions)
    reading: dict[str, Counters] = {}
    for node_id, per_node in stats.items():
        for key, s in per_node.items():
            route_uid, _, version = key.partition("/")
            if route_uid == uid and version in wanted:
                reading[f"{node_id}/{version}"] = Counters(
                    s.inference_count,
                    s.error_count + s.timeout_count,
                    s.total_inference_time_ms,
                    tuple(s.latency_histogram.counts),
                )
    return reading


def applied(rec: DeploymentRecord, plan: Plan, decision: Decision, now: datetime) -> DeploymentRecord:
    """`rec` with the decision's allocations and weights; a finished rollout drops the versions
    it retired (their routes are then removed by the planner)."""
    keep = None
    if decision.progress.phase == Phase.DONE:
        keep = set(plan.new)
    elif decision.progress.phase == Phase.ROLLED_BACK:
        keep = set(plan.old)
    versions = [
        v.model_copy(
            update={
                "allocations": decision.allocations.get(v.version_id, v.allocations),
                "weight": decision.weights.get(v.version_id, v.weight),
            }
        )
        for v in rec.versions
        if keep is None or v.version_id in keep
    ]
    face = dict(rec.face)
    finished = decision.finished
    face["rollout"] = None if finished else dump_rollout(plan, decision.progress)
    face["update_status"] = decision.progress.phase.value
    face["update_reason"] = decision.progress.reason
    if finished:
        face["last_rollout"] = dump_rollout(plan, decision.progress)
        configs = face.get("version_configs")
        configs = configs if isinstance(configs, dict) else {}
        face["version_configs"] = {k: c for k, c in configs.items() if keep is None or k in keep}
    return rec.model_copy(
        update={"versions": versions, "face": face, "updated_at": now, "version_no": rec.version_no + 1}
    )


class RolloutRunner:
    def __init__(
        self,
        repo: Repository,
        events: EventLog,
        planner: Planner,
        nudge: Callable[[Iterable[str]], None],
        on_finish: Callable[[DeploymentRecord, Decision, datetime], list[StatusEvent]],
    ) -> None:
        self._repo = repo
        self._events = events
        self._planner = planner
        self._nudge = nudge
        self._on_finish = on_finish  # the service's status/notification events of a finished rollout

    def tick(
        self,
        rec: DeploymentRecord,
        routes: list[RouteRecord],
        stats: Mapping[str, Mapping[str, InferenceStats]],
        now: datetime,
    ) -> DeploymentRecord | None:
        """One step of the service's rollout; the new record if it changed (None otherwise)."""
        raw = rec.face.get("rollout")
        if not isinstance(raw, dict):
            return None
        plan, progress = load_rollout(raw)
        decision = next_step(
            plan,
            progress,
            observe(rec, routes),
            counters_of(rec.uid, plan.fresh(), stats),
            now,
            timedelta(seconds=rec.deploy_timeout_seconds),
        )
        unchanged = (
            decision.progress == progress
            and all(
                decision.allocations.get(v.version_id, v.allocations) == v.allocations for v in rec.versions
            )
            and all(decision.weights.get(v.version_id, v.weight) == v.weight for v in rec.versions)
        )
        if unchanged:
            return None
        return self.apply(rec, plan, decision, now)

    def apply(
        self, rec: DeploymentRecord, plan: Plan, decision: Decision, now: datetime
    ) -> DeploymentRecord | None:
        updated = applied(rec, plan, decision, now)
        events = [
            EventLog.new(
                now,
                EventType.DEPLOYMENT_UPDATED,
                rec.project_id,
                rec.uid,
                deployment_id=rec.deployment_id,
                reason=decision.note or f"rollout {decision.progress.phase.value}",
                detail={
                    "phase": decision.progress.phase.value,
                    "allocations": ",".join(f"{k}={v}" for k, v in sorted(decision.allocations.items())),
                    "weights": ",".join(f"{k}={v}" for k, v in sorted(decision.weights.items())),
                },
            )
        ]
        if decision.finished:
            events += self._on_finish(updated, decision, now)
        try:
            self._repo.store.transact(
                [self._repo.deployment_write(updated, expect=rec.version_no), *self._events.writes(events)]
            )
        except ConditionFailed:
            return None  # changed meanwhile (a heartbeat, the planner): the next tick retries
        self._events.publish(events)
        changes = self._planner.replan(now)
        nodes = {r.node_id for ch in changes for r in ch.upserts + ch.deletes}
        if nodes:
            self._nudge(n.url for n in self._repo.list_nodes() if n.node_id in nodes)
        return updated
