"""A service's status, derived from its core deployment and the health of its routes; and the
due time of its auto-stop schedule. Pure: the caller passes in what it read and the time.

The core deployment state says whether the deployment is placed, loading, serving, stopped or
failed; a service adds `concerning` (it was running, and now some instances are not ready or
failed) and distinguishes `deploying` (never fully ready yet) from `running` (every instance of
every weighted version ready). The seed's notification events are 1 failed, 3 running,
7 concerning and 11 pending.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from modelfleet.core.errors import InvalidTransition, ValidationFailed
from modelfleet.core.lifecycle import DeploymentState


class ServiceState(StrEnum):
    PENDING = "pending"  # accepted; no node has room yet
    DEPLOYING = "deploying"  # placed; instances loading
    RUNNING = "running"  # every instance of every weighted version ready
    CONCERNING = "concerning"  # was running; some instances are now unhealthy or missing
    FAILED = "failed"  # instances failed to load, or the deploy timed out
    STOPPING = "stopping"
    STOPPED = "stopped"


EVENT_CODES: Mapping[ServiceState, int] = {
    ServiceState.FAILED: 1,
    ServiceState.RUNNING: 3,
    ServiceState.CONCERNING: 7,
    ServiceState.PENDING: 11,
}

_ALL = frozenset(ServiceState)
SERVICE_TRANSITIONS: Mapping[ServiceState, frozenset[ServiceState]] = {
    ServiceState.PENDING: _ALL - {ServiceState.PENDING},
    ServiceState.DEPLOYING: _ALL - {ServiceState.DEPLOYING},
    ServiceState.RUNNING: _ALL - {ServiceState.RUNNING},
    ServiceState.CONCERNING: _ALL - {ServiceState.CONCERNING},
    ServiceState.FAILED: _ALL - {ServiceState.FAILED},
    # A stopping service only finishes stopping (or is started again once stopped).
    ServiceState.STOPPING: frozenset({ServiceState.STOPPED}),
    ServiceState.STOPPED: frozenset({ServiceState.PENDING, ServiceState.DEPLOYING, ServiceState.RUNNING}),
}


def service_transition(current: ServiceState, target: ServiceState) -> ServiceState:
    if current != target and target not in SERVICE_TRANSITIONS[current]:
        raise InvalidTransition("ServiceState", current.value, target.value)
    return target


@dataclass(frozen=True)
class VersionHealth:
    """One version of the service: instances wanted, ready (started allocations), and failed."""

    version_id: str
    weight: int
    target: int
    ready: int
    failed: int = 0


@dataclass(frozen=True)
class ServiceStatus:
    state: ServiceState
    reason: str


def derive_service_state(
    deployment: DeploymentState,
    deployment_reason: str,
    versions: Sequence[VersionHealth],
    ever_running: bool,
) -> ServiceStatus:
    """The service status the core state and the routes imply."""
    if deployment == DeploymentState.STOPPED:
        return ServiceStatus(ServiceState.STOPPED, "")
    if deployment == DeploymentState.STOPPING:
        return ServiceStatus(ServiceState.STOPPING, "")
    if deployment == DeploymentState.FAILED:
        return ServiceStatus(ServiceState.FAILED, deployment_reason or "the service failed")
    if deployment == DeploymentState.PENDING:
        return ServiceStatus(ServiceState.PENDING, deployment_reason)
    wanted = [v for v in versions if v.target > 0]
    healthy = all(v.ready >= v.target and v.failed == 0 for v in wanted)
    if deployment == DeploymentState.STARTED and healthy:
        return ServiceStatus(ServiceState.RUNNING, "")
    failed = sum(v.failed for v in wanted)
    missing = sum(max(0, v.target - v.ready) for v in wanted)
    if ever_running or failed:
        parts = []
        if failed:
            parts.append(f"{failed} instance route(s) failed")
        if missing:
            parts.append(f"{missing} instance(s) not ready")
        return ServiceStatus(ServiceState.CONCERNING, "; ".join(parts) or deployment_reason)
    return ServiceStatus(ServiceState.DEPLOYING, deployment_reason)


_UNIT_MINUTES = {"MINUTES": 1, "HOURS": 60, "DAYS": 24 * 60}


def stop_after(time_unit: str, duration: int, seconds_per_minute: float = 60.0) -> timedelta:
    """How long after it starts running a `{type: stop}` schedule stops the service.
    `seconds_per_minute` compresses time on a test platform (60 = real time)."""
    if time_unit not in _UNIT_MINUTES:
        raise ValidationFailed(f"time_unit must be one of {sorted(_UNIT_MINUTES)}", "time_unit")
    if duration < 1:
        raise ValidationFailed("duration must be >= 1", "duration")
    return timedelta(seconds=duration * _UNIT_MINUTES[time_unit] * seconds_per_minute)


def auto_stop_due(running_since: datetime | None, after: timedelta | None, now: datetime) -> bool:
    """True when a service that has been running since `running_since` must stop now."""
    return running_since is not None and after is not None and now >= running_since + after
