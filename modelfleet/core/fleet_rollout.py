"""Fleet rollouts of edge services, and the status of a service drawn from its nodes. Pure: the
caller passes every observation and the current time.

A rollout moves the nodes of an edge service from their old model to a new one in waves. A wave
starts only when no node of the previous one is still updating (health gating), and holds at most
`max_unavailable` reachable nodes. A node that is offline when its turn comes is given the new
revision anyway (it converges when it returns) and shows `offline`; it takes no slot and never holds
up a wave. Once `abort_min_nodes` nodes have finished, a failure share at or above
`abort_failure_percent` aborts the rollout: every node that was given the new model is handed its
old one back (the rollback set).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

__all__ = [
    "Entry",
    "NodeHealth",
    "NodeProgress",
    "NodeServing",
    "Observation",
    "Policy",
    "RolloutState",
    "ServiceState",
    "Step",
    "advance",
    "aggregate_service_state",
    "is_online",
    "new_entries",
]


class NodeProgress(StrEnum):
    PENDING = "pending"  # not given the new model yet
    UPDATING = "updating"  # given it, reachable, not yet healthy
    UPDATED = "updated"  # reported the new model started (health-checked by the agent)
    FAILED = "failed"  # reported the new model failed (the agent rolled itself back), or timed out
    OFFLINE = "offline"  # given it while unreachable; converges when it returns
    CONVERGING = "converging"  # back after being given it offline; takes no slot (it was down already)
    ROLLED_BACK = "rolled_back"  # the rollout aborted: handed its old model again


class RolloutState(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    ABORTED = "aborted"


class NodeHealth(StrEnum):
    """What a node says of the rollout's target model."""

    HEALTHY = "healthy"
    FAILED = "failed"
    STARTING = "starting"
    UNKNOWN = "unknown"  # no report about the target yet


ASSIGNED = frozenset(
    {
        NodeProgress.UPDATING,
        NodeProgress.UPDATED,
        NodeProgress.FAILED,
        NodeProgress.OFFLINE,
        NodeProgress.CONVERGING,
    }
)
WAITING = frozenset({NodeProgress.UPDATING, NodeProgress.OFFLINE, NodeProgress.CONVERGING})


@dataclass(frozen=True)
class Policy:
    max_unavailable: int = 1
    abort_failure_percent: float = 50.0
    abort_min_nodes: int = 1
    node_timeout: timedelta = timedelta(minutes=5)


@dataclass(frozen=True)
class Entry:
    node_id: str
    progress: NodeProgress = NodeProgress.PENDING
    wave: int = 0  # 0: not started; waves count from 1
    reason: str = ""
    since: datetime | None = None  # when `progress` last changed


@dataclass(frozen=True)
class Observation:
    online: bool
    health: NodeHealth = NodeHealth.UNKNOWN
    reason: str = ""


@dataclass(frozen=True)
class Step:
    entries: tuple[Entry, ...]
    state: RolloutState
    assign: frozenset[str]  # give these nodes the new model now
    revert: frozenset[str]  # give these nodes their old model back now
    reason: str = ""


def is_online(last_heartbeat: datetime | None, now: datetime, offline_after: timedelta) -> bool:
    return last_heartbeat is not None and now - last_heartbeat <= offline_after


def new_entries(node_ids: Iterable[str]) -> tuple[Entry, ...]:
    return tuple(Entry(node_id=n) for n in dict.fromkeys(node_ids))


def _observe(entry: Entry, obs: Observation, policy: Policy, now: datetime) -> Entry:
    """An assigned node's progress after what it reported (unassigned ones are left alone)."""
    if entry.progress not in WAITING:
        return entry
    if obs.health is NodeHealth.HEALTHY:
        return replace(entry, progress=NodeProgress.UPDATED, reason="", since=now)
    if obs.health is NodeHealth.FAILED:
        return replace(entry, progress=NodeProgress.FAILED, reason=obs.reason or "failed", since=now)
    if not obs.online:
        if entry.progress is NodeProgress.OFFLINE:
            return entry
        return replace(entry, progress=NodeProgress.OFFLINE, reason="no heartbeat", since=now)
    if entry.progress is NodeProgress.OFFLINE:  # back: converging now, outside the waves
        return replace(entry, progress=NodeProgress.CONVERGING, reason="", since=now)
    if entry.since is not None and now - entry.since > policy.node_timeout:
        reason = f"not healthy within {int(policy.node_timeout.total_seconds())}s"
        return replace(entry, progress=NodeProgress.FAILED, reason=reason, since=now)
    return entry


def _should_abort(entries: Sequence[Entry], policy: Policy) -> str | None:
    updated = sum(e.progress is NodeProgress.UPDATED for e in entries)
    failed = sum(e.progress is NodeProgress.FAILED for e in entries)
    finished = updated + failed
    if finished < max(1, policy.abort_min_nodes) or failed == 0:
        return None
    if failed * 100 >= policy.abort_failure_percent * finished:
        return f"{failed} of {finished} finished nodes failed (abort at {policy.abort_failure_percent:g}%)"
    return None


def advance(
    entries: Sequence[Entry],
    observations: Mapping[str, Observation],
    policy: Policy,
    now: datetime,
    state: RolloutState = RolloutState.IN_PROGRESS,
) -> Step:
    """The rollout's next step. Nodes missing from `observations` count as offline.

    After completion late reports still update the entries (an offline node that returns shows
    updated or failed), but nothing is assigned or reverted any more; an aborted rollout is final.
    """
    offline = Observation(online=False)
    if state is RolloutState.ABORTED:
        return Step(tuple(entries), state, frozenset(), frozenset())
    seen = [_observe(e, observations.get(e.node_id, offline), policy, now) for e in entries]
    if state is RolloutState.COMPLETED:
        return Step(tuple(seen), state, frozenset(), frozenset())

    reason = _should_abort(seen, policy)
    if reason is not None:
        revert = frozenset(e.node_id for e in seen if e.progress in ASSIGNED)
        rolled = tuple(
            replace(e, progress=NodeProgress.ROLLED_BACK, reason=e.reason or reason, since=now)
            if e.node_id in revert
            else e
            for e in seen
        )
        return Step(rolled, RolloutState.ABORTED, frozenset(), revert, reason)

    assign: set[str] = set()
    if not any(e.progress is NodeProgress.UPDATING for e in seen):
        wave = max((e.wave for e in seen), default=0) + 1
        slots = max(1, policy.max_unavailable)
        out: list[Entry] = []
        for e in seen:
            if e.progress is NodeProgress.PENDING and slots > 0:
                if observations.get(e.node_id, offline).online:
                    slots -= 1
                    e = replace(e, progress=NodeProgress.UPDATING, wave=wave, since=now)
                else:
                    e = replace(e, progress=NodeProgress.OFFLINE, wave=wave, reason="offline", since=now)
                assign.add(e.node_id)
            out.append(e)
        seen = out

    # offline nodes never hold it open; reachable ones still converging do (bounded by node_timeout)
    active = any(
        e.progress in (NodeProgress.PENDING, NodeProgress.UPDATING, NodeProgress.CONVERGING) for e in seen
    )
    final = RolloutState.IN_PROGRESS if active else RolloutState.COMPLETED
    return Step(tuple(seen), final, frozenset(assign), frozenset())


# --- the service's status --------------------------------------------------------------------


class NodeServing(StrEnum):
    """One node's side of a service: is it serving the model it should?"""

    RUNNING = "running"
    STARTING = "starting"
    FAILED = "failed"
    OFFLINE = "offline"


class ServiceState(StrEnum):
    DEPLOYING = "deploying"
    RUNNING = "running"
    CONCERNING = "concerning"
    FAILED = "failed"


def aggregate_service_state(nodes: Sequence[NodeServing], rollout_active: bool) -> ServiceState:
    """running: every node serves its model; failed: none does and one failed; concerning: some
    serve and others failed or are offline (or all are offline); deploying: a rollout runs, or
    nodes are still starting."""
    if rollout_active:
        return ServiceState.DEPLOYING
    running = sum(n is NodeServing.RUNNING for n in nodes)
    if nodes and running == len(nodes):
        return ServiceState.RUNNING
    failed = any(n is NodeServing.FAILED for n in nodes)
    if running == 0 and failed:
        return ServiceState.FAILED
    if running > 0 and (failed or NodeServing.OFFLINE in nodes):
        return ServiceState.CONCERNING
    if any(n is NodeServing.STARTING for n in nodes):
        return ServiceState.DEPLOYING
    return ServiceState.CONCERNING
