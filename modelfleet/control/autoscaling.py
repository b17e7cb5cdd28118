"""Adaptive allocations, the I/O side: read each adaptive deployment's node counters, ask the pure
policy (`modelfleet.core.autoscale`), apply its decision through the deployment service, and keep
the policy's state in the deployment record. Run by the scheduled handler every tick, and by the
gateway when a request finds a deployment scaled to zero."""

from __future__ import annotations

import logging
from datetime import datetime

from modelfleet.control.deployments import DeploymentService
from modelfleet.control.errors import Conflict, NotFound
from modelfleet.control.repository import Repository
from modelfleet.core.autoscale import (
    AutoscaleContext,
    AutoscaleSettings,
    ScalerState,
    StatsReading,
    decide_allocations,
    scale_from_zero,
)
from modelfleet.core.lifecycle import DeploymentState, RoutingState
from modelfleet.core.ml_params import AdaptiveSettings
from modelfleet.core.placement import Priority
from schemas.deployments import DeploymentRecord
from schemas.stats import InferenceStats

log = logging.getLogger(__name__)
STATE_KEY = "autoscale_state"


def adaptive_of(d: DeploymentRecord) -> AdaptiveSettings | None:
    raw = d.face.get("adaptive_allocations")
    if not isinstance(raw, dict) or not raw.get("enabled"):
        return None
    return AdaptiveSettings(
        enabled=True,
        min_number_of_allocations=raw.get("min_number_of_allocations"),
        max_number_of_allocations=raw.get("max_number_of_allocations"),
    )


def state_of(d: DeploymentRecord) -> ScalerState:
    raw = d.face.get(STATE_KEY)
    return ScalerState.from_dict(raw if isinstance(raw, dict) else {})


class Autoscaler:
    def __init__(self, repo: Repository, deployments: DeploymentService, config: AutoscaleSettings) -> None:
        self._repo = repo
        self._deployments = deployments
        self._config = config

    def tick(self, now: datetime) -> list[dict[str, object]]:
        """One pass over every adaptive deployment; returns the changes made."""
        node_stats = self._repo.node_stats()
        changes: list[dict[str, object]] = []
        for d in self._repo.all_deployments():
            settings = adaptive_of(d)
            if settings is None or d.state in (DeploymentState.STOPPING, DeploymentState.STOPPED):
                continue
            routes = self._repo.routes(d.uid)
            per_node: dict[str, InferenceStats] = {}
            for r in routes:
                s = node_stats.get(r.node_id, {}).get(f"{d.uid}/{r.version_id}")
                if s is not None:
                    per_node[r.node_id] = s
            ctx = AutoscaleContext(
                now=now,
                settings=settings,
                current_allocations=d.versions[0].allocations,
                started=d.state == DeploymentState.STARTED,
                state=state_of(d),
                reading=StatsReading.from_node_stats(now, per_node),
                route_starting=any(r.routing_state == RoutingState.STARTING for r in routes),
                low_priority=d.priority == Priority.LOW,
            )
            result = decide_allocations(ctx, self._config)
            new = result.decision.new_allocations
            try:
                self._deployments.update(
                    d.project_id,
                    d.deployment_id,
                    now,
                    allocations=new,
                    face={STATE_KEY: result.state.to_dict()},
                )
            except (Conflict, NotFound):  # changed or deleted meanwhile: the next tick decides again
                continue
            if new is not None:
                log.info("adaptive allocations: %s %s", d.deployment_id, result.decision.reason)
                changes.append(
                    {"deployment_id": d.deployment_id, "allocations": new, "reason": result.decision.reason}
                )
        return changes

    def wake(self, d: DeploymentRecord, now: datetime) -> bool:
        """A request found no ready route of `d`. At zero allocations with adaptive allocations on,
        start max(1, min) of them. True if an allocation is (now) on its way, so the request
        should wait; False if adaptive allocations are off (nothing is changed)."""
        settings = adaptive_of(d)
        if settings is None:
            return False
        if d.versions[0].allocations > 0:
            return True  # another request woke it already; the allocation is loading
        result = scale_from_zero(
            now,
            settings,
            d.versions[0].allocations,
            state_of(d),
            self._config,
        )
        if result.decision.new_allocations is None:
            return False
        self._deployments.update(
            d.project_id,
            d.deployment_id,
            now,
            allocations=result.decision.new_allocations,
            face={STATE_KEY: result.state.to_dict()},
        )
        log.info("adaptive allocations: %s %s", d.deployment_id, result.decision.reason)
        return True
