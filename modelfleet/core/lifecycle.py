"""Lifecycle states as str Enums, each with its table of allowed transitions.

Every state change in the platform goes through `transition()`, which refuses anything the
table does not list. `derive_deployment_state()` turns the routes of a deployment into its
state: it is the one place that decides when a deployment is `started` or `failed`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import TypeVar

from modelfleet.core.errors import InvalidTransition


class ModelState(StrEnum):
    UPLOADING = "uploading"  # registered, artifacts not yet committed
    READY = "ready"  # artifacts verified (digest, signature)
    FAILED = "failed"  # commit refused: wrong digest, unreadable file


class DeploymentState(StrEnum):
    PENDING = "pending"  # accepted, but no node has room for any allocation
    STARTING = "starting"  # placed; nodes are loading the model
    STARTED = "started"  # at least one route serves
    FAILED = "failed"  # every route failed to load, or deploy timed out
    STOPPING = "stopping"  # asked to stop; nodes are unloading
    STOPPED = "stopped"  # no allocations anywhere


# The reason of a deployment the planner has not looked at yet; any other `pending` reason is the
# planner's (no node has room), which the Elasticsearch face answers at once, as ES does.
WAITING_FOR_PLACEMENT = "waiting for placement"


class RoutingState(StrEnum):
    STARTING = "starting"
    STARTED = "started"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"


class NodeState(StrEnum):
    READY = "ready"
    LOST = "lost"  # missed its heartbeats; its allocations were re-planned
    DRAINING = "draining"
    DEREGISTERED = "deregistered"


MODEL_TRANSITIONS: Mapping[ModelState, frozenset[ModelState]] = {
    ModelState.UPLOADING: frozenset({ModelState.READY, ModelState.FAILED}),
    ModelState.READY: frozenset(),
    ModelState.FAILED: frozenset({ModelState.READY}),
}

DEPLOYMENT_TRANSITIONS: Mapping[DeploymentState, frozenset[DeploymentState]] = {
    # pending -> started: placed and loaded between two observations.
    DeploymentState.PENDING: frozenset(
        {
            DeploymentState.STARTING,
            DeploymentState.STARTED,
            DeploymentState.FAILED,
            DeploymentState.STOPPING,
            DeploymentState.STOPPED,
        }
    ),
    DeploymentState.STARTING: frozenset(
        {DeploymentState.STARTED, DeploymentState.FAILED, DeploymentState.PENDING, DeploymentState.STOPPING}
    ),
    DeploymentState.STARTED: frozenset(
        {DeploymentState.STARTING, DeploymentState.PENDING, DeploymentState.FAILED, DeploymentState.STOPPING}
    ),
    # failed -> started: a failed route was retried (re-planned) and loaded.
    DeploymentState.FAILED: frozenset(
        {
            DeploymentState.STARTING,
            DeploymentState.STARTED,
            DeploymentState.PENDING,
            DeploymentState.STOPPING,
            DeploymentState.STOPPED,
        }
    ),
    DeploymentState.STOPPING: frozenset({DeploymentState.STOPPED}),
    DeploymentState.STOPPED: frozenset({DeploymentState.STARTING, DeploymentState.PENDING}),
}

ROUTING_TRANSITIONS: Mapping[RoutingState, frozenset[RoutingState]] = {
    RoutingState.STARTING: frozenset({RoutingState.STARTED, RoutingState.FAILED, RoutingState.STOPPING}),
    RoutingState.STARTED: frozenset({RoutingState.STARTING, RoutingState.FAILED, RoutingState.STOPPING}),
    # failed -> started: the node restarted, or was given the route again, and the load worked.
    RoutingState.FAILED: frozenset({RoutingState.STARTING, RoutingState.STARTED, RoutingState.STOPPING}),
    RoutingState.STOPPING: frozenset({RoutingState.STOPPED}),
    RoutingState.STOPPED: frozenset(),
}

NODE_TRANSITIONS: Mapping[NodeState, frozenset[NodeState]] = {
    NodeState.READY: frozenset({NodeState.LOST, NodeState.DRAINING, NodeState.DEREGISTERED}),
    NodeState.LOST: frozenset({NodeState.READY, NodeState.DEREGISTERED}),
    NodeState.DRAINING: frozenset({NodeState.READY, NodeState.DEREGISTERED}),
    NodeState.DEREGISTERED: frozenset(),
}

_TABLES: Mapping[type[Enum], Mapping[Enum, frozenset[Enum]]] = {
    ModelState: MODEL_TRANSITIONS,  # type: ignore[dict-item]
    DeploymentState: DEPLOYMENT_TRANSITIONS,  # type: ignore[dict-item]
    RoutingState: ROUTING_TRANSITIONS,  # type: ignore[dict-item]
    NodeState: NODE_TRANSITIONS,  # type: ignore[dict-item]
}

S = TypeVar("S", ModelState, DeploymentState, RoutingState, NodeState)


def can_transition(current: S, target: S) -> bool:
    """True when `current -> target` is listed (staying in the same state is always allowed)."""
    if current == target:
        return True
    return target in _TABLES[type(current)][current]


def transition(current: S, target: S) -> S:
    """Return `target`, or raise InvalidTransition when the table does not allow the change."""
    if not can_transition(current, target):
        raise InvalidTransition(type(current).__name__, current.value, target.value)
    return target


@dataclass(frozen=True)
class RouteStatus:
    """What the deployment state is derived from: one route (a version on one node)."""

    routing_state: RoutingState
    current_allocations: int
    target_allocations: int
    reason: str = ""


@dataclass(frozen=True)
class DerivedState:
    state: DeploymentState
    reason: str


def derive_deployment_state(
    current: DeploymentState,
    routes: Sequence[RouteStatus],
    unplaced_reason: str = "",
    deploy_timed_out: bool = False,
    scaled_to_zero: bool = False,
) -> DerivedState:
    """The deployment state its routes imply.

    - a stopped deployment stays stopped; stopping becomes stopped once no route is left;
    - any started route makes the deployment `started`;
    - a started deployment scaled to zero allocations on purpose stays `started` with no route
      (the next request scales it from zero);
    - no route at all means `pending` (with the planner's reason);
    - every route failed means `failed` with the first route's reason;
    - otherwise `starting`, or `failed` once the deploy timeout has passed.
    """
    if current == DeploymentState.STOPPED:
        return DerivedState(DeploymentState.STOPPED, "")
    if current == DeploymentState.STOPPING:
        live = [r for r in routes if r.routing_state != RoutingState.STOPPED]
        return DerivedState(DeploymentState.STOPPED if not live else DeploymentState.STOPPING, "")
    if any(r.routing_state == RoutingState.STARTED for r in routes):
        return DerivedState(DeploymentState.STARTED, "")
    if scaled_to_zero and current == DeploymentState.STARTED and not routes:
        return DerivedState(DeploymentState.STARTED, "scaled to zero allocations")
    if not routes:
        reason = unplaced_reason or "no node has room for the deployment"
        return DerivedState(DeploymentState.PENDING, reason)
    failed = [r for r in routes if r.routing_state == RoutingState.FAILED]
    if failed and len(failed) == len(routes):
        return DerivedState(DeploymentState.FAILED, failed[0].reason or "every allocation failed to load")
    if deploy_timed_out:
        return DerivedState(DeploymentState.FAILED, "deployment did not start before its deploy timeout")
    return DerivedState(DeploymentState.STARTING, "")
