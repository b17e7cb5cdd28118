"""Trained-model deployments of the `_ml` face: start, update, stop, cache clear, and the views.

An Elasticsearch deployment is a core deployment of kind `ml` with one version whose
`allocations` is the total `number_of_allocations`; the planner spreads them over nodes. Its
Elasticsearch-only settings (adaptive allocations, the autoscaler's state, the requested values
before clamping) live in the record's `face`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelfleet.control.container import ControlPlane
from modelfleet.control.errors import ControlError
from modelfleet.core.lifecycle import DeploymentState, ModelState, RoutingState
from modelfleet.core.placement import Priority
from modelfleet.faces.elastic.errors import (
    EsBadRequest,
    EsConflict,
    EsNotFound,
    EsTimeout,
    from_control,
)
from modelfleet.faces.elastic.models import TrainedModels
from schemas.deployments import DeploymentCreate, DeploymentKind, DeploymentRecord, RouteRecord
from schemas.elastic import AdaptiveAllocations

ACTIVE = (DeploymentState.PENDING, DeploymentState.STARTING, DeploymentState.STARTED, DeploymentState.FAILED)
ASSIGNMENT_STATES = {
    DeploymentState.PENDING: "starting",
    DeploymentState.STARTING: "starting",
    DeploymentState.STARTED: "started",
    DeploymentState.FAILED: "failed",
    DeploymentState.STOPPING: "stopping",
    DeploymentState.STOPPED: "stopping",
}
WAIT_POLL_SECONDS = 0.05
STOP_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class StartParams:
    deployment_id: str
    number_of_allocations: int
    threads_per_allocation: int
    queue_capacity: int
    priority: Priority
    cache_size_bytes: int | None  # None: the model's size
    timeout_seconds: float
    wait_for: str
    adaptive: AdaptiveAllocations | None
    notes: tuple[str, ...] = ()  # what clamping changed


def allocation_status(d: DeploymentRecord, routes: list[RouteRecord]) -> dict[str, Any]:
    count = sum(r.current_allocations for r in routes if r.routing_state == RoutingState.STARTED)
    target = d.versions[0].allocations
    state = "starting" if count == 0 else ("fully_allocated" if count >= target else "started")
    return {"allocation_count": count, "target_allocation_count": target, "state": state}


def reached(wait_for: str, d: DeploymentRecord, routes: list[RouteRecord]) -> bool:
    """Whether `wait_for` is reached. A node marks its route started a moment before the
    deployment record follows; waiting for the record too keeps the answer's `assignment_state`
    and an `_update` sent right after consistent with what was waited for."""
    if wait_for == "starting":
        return True
    if d.state != DeploymentState.STARTED:
        return False
    status = str(allocation_status(d, routes)["state"])
    if wait_for == "started":
        return status in ("started", "fully_allocated") or d.versions[0].allocations == 0
    return status == "fully_allocated"


def assignment_view(d: DeploymentRecord, routes: list[RouteRecord]) -> dict[str, Any]:
    v = d.versions[0]
    current = sum(r.current_allocations for r in routes)
    params: dict[str, Any] = {
        "model_id": v.model_id,
        "deployment_id": d.deployment_id,
        "model_bytes": v.model_bytes,
        "threads_per_allocation": v.threads_per_allocation,
        "number_of_allocations": v.allocations,
        "queue_capacity": d.queue_capacity,
        "cache_size": f"{v.cache_size_bytes if v.cache_size_bytes is not None else v.model_bytes}b",
        "priority": d.priority.value,
        "per_deployment_memory_bytes": v.per_deployment_memory_bytes,
        "per_allocation_memory_bytes": v.per_allocation_memory_bytes,
    }
    view: dict[str, Any] = {
        "task_parameters": params,
        "routing_table": {
            r.node_id: {
                "current_allocations": r.current_allocations,
                "target_allocations": r.target_allocations,
                "routing_state": r.routing_state.value,
                "reason": r.reason,
            }
            for r in sorted(routes, key=lambda r: r.node_id)
        },
        "assignment_state": ASSIGNMENT_STATES[d.state],
        "start_time": d.created_at.isoformat().replace("+00:00", "Z"),
        "max_assigned_allocations": max(int(str(d.face.get("max_assigned_allocations", 0))), current),
    }
    if d.reason and d.state in (DeploymentState.FAILED, DeploymentState.PENDING):
        view["reason"] = d.reason
    adaptive = d.face.get("adaptive_allocations")
    if adaptive:
        view["adaptive_allocations"] = adaptive
    return view


class MlDeployments:
    def __init__(self, cp: ControlPlane, models: TrainedModels) -> None:
        self._cp = cp
        self._models = models

    # --- lookups ------------------------------------------------------------------------------
    def ml_deployments(self, project_id: str) -> list[tuple[DeploymentRecord, list[RouteRecord]]]:
        return [
            (d, r)
            for d, r in self._cp.deployments.list_deployments(project_id)
            if d.kind == DeploymentKind.ML and d.state != DeploymentState.STOPPED
        ]

    def resolve(self, project_id: str, ident: str) -> DeploymentRecord:
        """A deployment id, else the one (preferably started) deployment of that model."""
        found = [d for d, _ in self.ml_deployments(project_id) if d.deployment_id == ident]
        if not found:
            of_model = [d for d, _ in self.ml_deployments(project_id) if d.versions[0].model_id == ident]
            rank = {DeploymentState.STARTED: 0, DeploymentState.STARTING: 1, DeploymentState.PENDING: 2}
            found = sorted(of_model, key=lambda d: rank.get(d.state, 3))
        if not found:
            self._models.get(project_id, ident)  # 404 for an unknown model
            raise EsConflict(f"Trained model deployment [{ident}] is not allocated to any nodes")
        return found[0]

    # --- start --------------------------------------------------------------------------------
    def start(
        self,
        project_id: str,
        model_id: str,
        p: StartParams,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
    ) -> dict[str, Any]:
        model = self._models.get(project_id, model_id)
        if model.state != ModelState.READY:
            missing = []
            if not (model.face.get("definition") or {}).get("complete"):
                missing.append("definition (some parts are missing)")
            if not model.face.get("vocabulary"):
                missing.append("vocabulary")
            raise EsBadRequest(
                f"Could not start deployment because the model [{model_id}] is not fully defined: "
                f"missing {' and '.join(missing) or 'files'}"
            )
        if p.deployment_id != model_id and self._cp.repo.get_model(project_id, p.deployment_id):
            raise EsBadRequest(
                f"Deployment id [{p.deployment_id}] is the same as an another model which is not "
                f"the model being deployed. Deployment id can be the same as the model being deployed only"
            )
        existing = self._cp.repo.get_deployment(project_id, p.deployment_id)
        now = clock()
        if existing is not None:
            if existing.state != DeploymentState.STOPPED:
                raise EsConflict(
                    f"Could not start model deployment because an existing deployment with the same id "
                    f"[{p.deployment_id}] exist"
                )
            self._cp.deployments.delete(project_id, p.deployment_id, now)
        face: dict[str, object] = {"requested": {"notes": list(p.notes)}}
        if p.adaptive is not None:
            face["adaptive_allocations"] = p.adaptive.model_dump(exclude_none=True)
        req = DeploymentCreate(
            deployment_id=p.deployment_id,
            model_id=model_id,
            allocations=max(1, p.number_of_allocations),
            threads_per_allocation=p.threads_per_allocation,
            priority=p.priority,
            queue_capacity=p.queue_capacity,
            max_batch_size=1,
        )
        try:
            self._cp.deployments.create(
                project_id, req, now, kind=DeploymentKind.ML, face=face, cache_size_bytes=p.cache_size_bytes
            )
        except ControlError as e:
            raise from_control(e) from None
        return self.wait(project_id, p.deployment_id, p.wait_for, p.timeout_seconds, clock, sleep)

    def wait(
        self,
        project_id: str,
        deployment_id: str,
        wait_for: str,
        timeout_seconds: float,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
    ) -> dict[str, Any]:
        """Poll until the deployment reaches `wait_for`; 408 when the timeout passes (it keeps going)."""
        start = clock()
        while True:
            d, routes = self._cp.deployments.get(project_id, deployment_id)
            if reached(wait_for, d, routes):
                return {"assignment": assignment_view(d, routes)}
            failed = [r for r in routes if r.routing_state == RoutingState.FAILED]
            if d.state == DeploymentState.FAILED or (failed and len(failed) == len(routes)):
                reasons = "; ".join(f"[{r.node_id}]: {r.reason}" for r in failed) or d.reason
                self._cp.deployments.stop(project_id, deployment_id, clock())
                raise EsBadRequest(
                    f"Could not start deployment because it failed on the following nodes: {reasons}",
                    "status_exception",
                )
            if (clock() - start).total_seconds() >= timeout_seconds:
                raise EsTimeout(
                    f"Timed out after [{timeout_seconds:g}s] waiting for model deployment "
                    f"[{deployment_id}] to be [{wait_for}]. Use the trained model stats API to track "
                    f"the state of the deployment."
                )
            sleep(WAIT_POLL_SECONDS)

    # --- update -------------------------------------------------------------------------------
    def update(
        self,
        project_id: str,
        ident: str,
        number_of_allocations: int | None,
        adaptive: AdaptiveAllocations | None,
        now: datetime,
    ) -> dict[str, Any]:
        d = self.resolve(project_id, ident)
        if d.state != DeploymentState.STARTED:
            raise EsConflict(
                f"cannot update deployment that is not in [started] state; "
                f"[{d.deployment_id}] is [{ASSIGNMENT_STATES[d.state]}]"
            )
        if d.priority == Priority.LOW and (number_of_allocations or 1) > 1:
            raise EsBadRequest("[number_of_allocations] must be 1 when [priority] is low")
        settings: dict[str, object] = {}
        allocations = number_of_allocations
        if adaptive is not None:
            settings["adaptive_allocations"] = adaptive.model_dump(exclude_none=True)
            if adaptive.enabled and allocations is None:
                lo = adaptive.min_number_of_allocations or 0
                hi = adaptive.max_number_of_allocations or 32
                current = d.versions[0].allocations
                clamped = min(max(current, lo, 1 if current else 0), hi)
                allocations = clamped if clamped != current else None
        try:
            self._cp.deployments.update(
                project_id,
                d.deployment_id,
                now,
                allocations=allocations,
                face=settings or None,
                require_state=DeploymentState.STARTED,
            )
        except ControlError as e:
            raise from_control(e) from None
        rec, routes = self._cp.deployments.get(project_id, d.deployment_id)
        return {"assignment": assignment_view(rec, routes)}

    # --- stop ---------------------------------------------------------------------------------
    def stop(
        self,
        project_id: str,
        ident: str,
        allow_no_match: bool,
        clock: Callable[[], datetime],
        sleep: Callable[[float], None],
        timeout_seconds: float = STOP_TIMEOUT_SECONDS,
    ) -> dict[str, Any]:
        """Stop, and (as Elasticsearch does) answer once the nodes have unloaded the model, so a
        delete right after succeeds. Past the timeout the stop goes on in the background."""
        if "*" in ident or ident == "_all":
            pattern = "*" if ident == "_all" else ident
            hits = [
                d
                for d, _ in self.ml_deployments(project_id)
                if fnmatch.fnmatchcase(d.deployment_id, pattern)
                or fnmatch.fnmatchcase(d.versions[0].model_id, pattern)
            ]
            if not hits and not allow_no_match:
                raise EsNotFound(f"No known trained model with model_id [{ident}]")
        else:
            try:
                hits = [self.resolve(project_id, ident)]
            except EsConflict:  # a known model with no deployment: nothing to stop
                return {"stopped": True}
        start = clock()
        for d in hits:
            try:
                self._cp.deployments.stop(project_id, d.deployment_id, start)
            except ControlError as e:
                raise from_control(e) from None
        while (clock() - start).total_seconds() < timeout_seconds:
            states = [self._cp.repo.get_deployment(project_id, d.deployment_id) for d in hits]
            if all(s is None or s.state == DeploymentState.STOPPED for s in states):
                break
            sleep(WAIT_POLL_SECONDS)
        return {"stopped": True}
