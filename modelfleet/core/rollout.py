"""Rolling upgrades and metric-gated canaries of a service, as pure step decisions.

A rollout takes a service from its `old` versions (allocations and traffic weights) to its `new`
ones. Every scheduler tick reads what the nodes report (allocations wanted, instances ready,
routes failed, the new versions' inference counters) and calls `next_step`, which answers the
allocations and weights to write now and the rollout's next progress. Nothing here reads a clock.

**Rolling** (Kubernetes' rule, per service): at most `total_new + max_surge` instances are
wanted at once, and ready instances never fall below `total_new - max_unavailable` (nor below
what was ready when the rollout began, if that was less). Instances are added to incoming
versions while there is surge room; old instances are removed only when enough others are ready
(unready ones first). An outgoing version's last instances are drained: its weight goes to 0
first, and its allocations only after `grace_seconds`. A route of an incoming version that fails
to load rolls everything back.

**Canary / linear**: the new versions are brought up beside the old ones with no traffic; then
traffic moves in steps (the new versions' share: e.g. 10, 50, 100), each held for
`bake_seconds`. At the end of a bake the new versions' counters since the step began are judged
(`judge`): an error rate or a p95 latency over its threshold rolls back to 100% on the old
versions and removes the new instances; the reason is kept. A bake with fewer than
`min_requests` requests is extended until there are enough.

**What the bake sees**: each node reports, per route, cumulative counters and a cumulative latency
histogram (`core.latency`). A `Reading` keeps them per route ("<node>/<version>"); the bake's
activity is the per-route difference from the reading taken when the step began, summed, and a
route whose counters went down was restarted and counts from zero (as `core.autoscale` does), so
a node restart is neither negative traffic nor a hidden failure. The p95 is read from the
merged differenced histograms: exact to within one bucket (19%).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from modelfleet.core.errors import InvalidTransition, ValidationFailed
from modelfleet.core.latency import Histogram, count, difference, merge, p95_ms, went_down


class Strategy(StrEnum):
    ROLLING = "rolling"
    CANARY = "canary"
    LINEAR = "linear"


class Phase(StrEnum):
    SCALING = "scaling"  # rolling: instances move; canary: new instances come up without traffic
    BAKING = "baking"  # canary: a traffic step is held and watched
    DRAINING = "draining"  # outgoing versions get no traffic; their instances go after the grace
    DONE = "done"
    ROLLED_BACK = "rolled_back"


PHASE_TRANSITIONS: Mapping[Phase, frozenset[Phase]] = {
    Phase.SCALING: frozenset({Phase.BAKING, Phase.DRAINING, Phase.DONE, Phase.ROLLED_BACK}),
    Phase.BAKING: frozenset({Phase.DRAINING, Phase.ROLLED_BACK}),
    Phase.DRAINING: frozenset({Phase.DONE}),
    Phase.DONE: frozenset(),
    Phase.ROLLED_BACK: frozenset(),
}


def _to(current: Phase, target: Phase) -> Phase:
    if current != target and target not in PHASE_TRANSITIONS[current]:
        raise InvalidTransition("RolloutPhase", current.value, target.value)
    return target


@dataclass(frozen=True)
class Slot:
    """A version's allocations and traffic weight."""

    allocations: int
    weight: int


@dataclass(frozen=True)
class Observed:
    """What the nodes report of one version now."""

    allocations: int  # wanted (in the record)
    weight: int
    ready: int  # started instances
    failed: int = 0  # routes that failed to load


@dataclass(frozen=True)
class Counters:
    """Inference counters of the new versions: one route's cumulative reading, or (from `since`)
    the activity of all of them over a bake."""

    requests: int = 0  # successful
    errors: int = 0  # failed or timed out
    time_ms: float = 0.0
    latency: Histogram = ()  # successful requests by latency bucket

    def restarted_since(self, before: Counters) -> bool:
        """A cumulative counter went down: the route's process started again from zero."""
        return (
            self.requests < before.requests
            or self.errors < before.errors
            or self.time_ms < before.time_ms
            or went_down(self.latency, before.latency)
        )

    def minus(self, base: Counters) -> Counters:
        """What this route counted since `base` (everything, if it restarted meanwhile)."""
        if self.restarted_since(base):
            base = Counters()
        return Counters(
            self.requests - base.requests,
            self.errors - base.errors,
            self.time_ms - base.time_ms,
            difference(self.latency, base.latency),
        )

    def plus(self, other: Counters) -> Counters:
        return Counters(
            self.requests + other.requests,
            self.errors + other.errors,
            self.time_ms + other.time_ms,
            merge([self.latency, other.latency]),
        )

    @property
    def p95_ms(self) -> float | None:
        return p95_ms(self.latency)


Reading = Mapping[str, Counters]  # "<node id>/<version id>" -> that route's cumulative counters


def since(reading: Reading, baseline: Reading) -> Counters:
    """The activity between two readings: per-route differences, summed. A route new since the
    baseline counts from zero; a route gone since (its node lost) adds nothing."""
    total = Counters()
    for key, now in reading.items():
        total = total.plus(now.minus(baseline.get(key, Counters())))
    return total


@dataclass(frozen=True)
class Policy:
    strategy: Strategy = Strategy.ROLLING
    max_surge: int = 1
    max_unavailable: int = 0
    grace_seconds: float = 30.0
    steps: tuple[int, ...] = (100,)  # the new versions' traffic share at each canary step
    bake_seconds: float = 30.0
    max_error_rate: float = 0.05
    max_p95_latency_ms: float | None = None  # the new versions' p95 over one bake
    min_requests: int = 1

    def __post_init__(self) -> None:
        if self.max_surge < 0 or self.max_unavailable < 0:
            raise ValidationFailed("max_surge and max_unavailable must be >= 0", "max_surge")
        if self.max_surge == 0 and self.max_unavailable == 0 and self.strategy == Strategy.ROLLING:
            raise ValidationFailed("max_surge and max_unavailable cannot both be 0", "max_surge")
        if (
            not self.steps
            or any(not 0 < s <= 100 for s in self.steps)
            or list(self.steps) != sorted(set(self.steps))
        ):
            raise ValidationFailed("steps must be increasing percentages in (0, 100]", "steps")
        if self.steps[-1] != 100:
            raise ValidationFailed("the last step must be 100", "steps")


def surge_count(value: float, instances: int) -> int:
    """The seed's max_surge: below 1 a fraction of the instances (rounded up), else a count."""
    return math.ceil(value * instances) if value < 1 else int(value)


def unavailable_count(value: float, instances: int) -> int:
    """The seed's max_unavailable: below 1 a fraction (rounded down), else a count."""
    return math.floor(value * instances) if value < 1 else int(value)


def linear_steps(step_percent: int) -> tuple[int, ...]:
    if not 0 < step_percent <= 100:
        raise ValidationFailed("step_percent must be in (0, 100]", "step_percent")
    return tuple(sorted({*range(step_percent, 100, step_percent), 100}))


@dataclass(frozen=True)
class Plan:
    old: Mapping[str, Slot]  # the versions before the update
    new: Mapping[str, Slot]  # the versions after it (a version in both keeps its id)
    policy: Policy

    def versions(self) -> list[str]:
        return sorted({*self.old, *self.new})

    def final(self, vid: str) -> Slot:
        return self.new.get(vid, Slot(0, 0))

    def incoming(self) -> list[str]:
        return sorted(
            v for v in self.new if v not in self.old or self.new[v].allocations > self.old[v].allocations
        )

    def fresh(self) -> list[str]:
        """Versions that did not exist before (what a canary watches)."""
        return sorted(v for v in self.new if v not in self.old)


@dataclass(frozen=True)
class Progress:
    phase: Phase
    since: datetime  # when the phase (or the canary step) began
    started_at: datetime
    step: int = 0  # canary: index into policy.steps
    baseline: Reading = field(default_factory=dict)  # the new versions' routes' counters at step start
    floor_at_start: int | None = None
    reason: str = ""


def start(plan: Plan, observed: Mapping[str, Observed], now: datetime) -> Progress:
    ready = sum(min(o.ready, o.allocations) for o in observed.values())
    return Progress(Phase.SCALING, now, now, floor_at_start=ready)


@dataclass(frozen=True)
class Decision:
    allocations: dict[str, int]
    weights: dict[str, int]
    progress: Progress
    note: str = ""  # what happened this tick, for the history

    @property
    def finished(self) -> bool:
        return self.progress.phase in (Phase.DONE, Phase.ROLLED_BACK)


def floor_of(plan: Plan, progress: Progress) -> int:
    total_new = sum(s.allocations for s in plan.new.values())
    floor = max(0, total_new - plan.policy.max_unavailable)
    if progress.floor_at_start is not None:
        floor = min(floor, progress.floor_at_start)
    return floor


def _current(plan: Plan, observed: Mapping[str, Observed]) -> tuple[dict[str, int], dict[str, int]]:
    allocs = {v: observed[v].allocations if v in observed else 0 for v in plan.versions()}
    weights = {v: observed[v].weight if v in observed else 0 for v in plan.versions()}
    return allocs, weights


def rollback(plan: Plan, progress: Progress, now: datetime, reason: str) -> Decision:
    """Back to the old versions at their old weights; the new instances go at once."""
    allocs = {v: plan.old[v].allocations if v in plan.old else 0 for v in plan.versions()}
    weights = {v: plan.old[v].weight if v in plan.old else 0 for v in plan.versions()}
    done = replace(progress, phase=_to(progress.phase, Phase.ROLLED_BACK), since=now, reason=reason)
    return Decision(allocs, weights, done, f"rolled back: {reason}")


def _failed_incoming(plan: Plan, observed: Mapping[str, Observed]) -> str | None:
    for v in plan.incoming():
        o = observed.get(v)
        if o is not None and o.failed > 0:
            return f"version '{v}': {o.failed} instance(s) failed to load"
    return None


def next_step(
    plan: Plan,
    progress: Progress,
    observed: Mapping[str, Observed],
    counters: Reading,
    now: datetime,
    deploy_timeout: timedelta,
) -> Decision:
    """The allocations and weights to write now, and the rollout's progress after this tick.
    `counters` is the new versions' routes' latest reading (see `since`)."""
    allocs, weights = _current(plan, observed)
    if progress.phase in (Phase.DONE, Phase.ROLLED_BACK):
        return Decision(allocs, weights, progress)
    failure = _failed_incoming(plan, observed)
    if failure and progress.phase != Phase.DRAINING:
        return rollback(plan, progress, now, failure)
    if progress.phase == Phase.SCALING and now - progress.since > deploy_timeout:
        return rollback(
            plan, progress, now, f"new instances not ready within {deploy_timeout.total_seconds():g}s"
        )
    if plan.policy.strategy == Strategy.ROLLING:
        return _rolling(plan, progress, observed, allocs, weights, now)
    return _canary(plan, progress, observed, counters, allocs, weights, now)


def _ready(observed: Mapping[str, Observed], allocs: Mapping[str, int]) -> dict[str, int]:
    return {v: min(observed[v].ready, allocs[v]) if v in observed else 0 for v in allocs}


def _rolling(
    plan: Plan,
    progress: Progress,
    observed: Mapping[str, Observed],
    allocs: dict[str, int],
    weights: dict[str, int],
    now: datetime,
) -> Decision:
    policy = plan.policy
    total_new = sum(s.allocations for s in plan.new.values())
    ready = _ready(observed, allocs)
    if progress.phase == Phase.DRAINING:
        return _drain(plan, progress, allocs, weights, now)
    # Incoming and kept versions carry their final weights from the start.
    for v, slot in plan.new.items():
        weights[v] = slot.weight
    # Scale up within the surge room.
    room = total_new + policy.max_surge - sum(allocs.values())
    for v in plan.versions():
        want = plan.final(v).allocations
        if allocs[v] < want and room > 0:
            add = min(room, want - allocs[v])
            allocs[v] += add
            room -= add
    # Scale down what is above its final count: unready instances first, then ready ones while
    # the others keep the floor. Outgoing versions keep their last instances for the drain.
    removable = sum(ready.values()) - floor_of(plan, progress)
    # Only when there is no surge room left for versions still growing must outgoing versions give
    # up their last instances without a drain (max_surge 0: capacity is freed before it is added).
    starved = room <= 0 and any(allocs[v] < s.allocations for v, s in plan.new.items())
    for v in plan.versions():
        excess = allocs[v] - plan.final(v).allocations
        if excess <= 0:
            continue
        unready = allocs[v] - ready[v]
        take = min(excess, unready + max(0, removable))
        if plan.final(v).allocations == 0 and not starved:
            take = min(take, allocs[v] - 1)
        if take > 0:
            removable -= max(0, take - unready)
            allocs[v] -= take
    settled = all(allocs[v] == s.allocations and ready[v] >= s.allocations for v, s in plan.new.items())
    if not settled:
        return Decision(allocs, weights, progress)
    if any(allocs[v] > plan.final(v).allocations for v in plan.versions()):
        draining = replace(progress, phase=_to(progress.phase, Phase.DRAINING), since=now)
        return _drain(plan, draining, allocs, weights, now)
    done = replace(progress, phase=_to(progress.phase, Phase.DONE), since=now)
    return Decision(allocs, weights, done, "rolling upgrade finished")


def _drain(
    plan: Plan, progress: Progress, allocs: dict[str, int], weights: dict[str, int], now: datetime
) -> Decision:
    """Outgoing versions get no traffic; after the grace period their instances go."""
    for v in plan.versions():
        weights[v] = plan.final(v).weight
    if (now - progress.since).total_seconds() < plan.policy.grace_seconds:
        return Decision(allocs, weights, progress)
    for v in plan.versions():
        allocs[v] = plan.final(v).allocations
    done = replace(progress, phase=_to(progress.phase, Phase.DONE), since=now)
    return Decision(allocs, weights, done, "old versions drained; update finished")


def step_weights(plan: Plan, share: int) -> dict[str, int]:
    """Weights (0-100) `share`% of the way from the old traffic split to the new one: fresh
    versions get `share`% of the traffic, outgoing ones the rest, kept ones a mix."""

    def normalised(slots: Mapping[str, Slot]) -> dict[str, float]:
        total = sum(s.weight for s in slots.values())
        return {v: 100.0 * s.weight / total for v, s in slots.items()} if total else {}

    old, new = normalised(plan.old), normalised(plan.new)
    raw = {v: (100 - share) * old.get(v, 0.0) + share * new.get(v, 0.0) for v in plan.versions()}
    top = max(raw.values(), default=0.0)
    if top <= 0:
        return dict.fromkeys(raw, 0)
    return {v: max(1, round(w * 100 / top)) if w > 0 else 0 for v, w in raw.items()}


def judge(policy: Policy, delta: Counters) -> str | None:
    """Why the new versions failed this bake (None: they passed). `delta` is the bake's activity."""
    total = delta.requests + delta.errors
    rate = delta.errors / total if total else 0.0
    if rate > policy.max_error_rate:
        return (
            f"error rate {rate:.1%} of the new version(s) over {total} requests exceeds "
            f"max_error_rate {policy.max_error_rate:.1%}"
        )
    limit = policy.max_p95_latency_ms
    p95 = delta.p95_ms
    if limit is not None and p95 is not None and p95 > limit:
        return (
            f"p95 latency {p95:.2f} ms of the new version(s) over {count(delta.latency)} "
            f"requests exceeds max_p95_latency_ms {limit:g}"
        )
    return None


def _canary(
    plan: Plan,
    progress: Progress,
    observed: Mapping[str, Observed],
    counters: Reading,
    allocs: dict[str, int],
    weights: dict[str, int],
    now: datetime,
) -> Decision:
    policy = plan.policy
    fresh = plan.fresh()
    if progress.phase == Phase.DRAINING:
        return _drain(plan, progress, allocs, weights, now)
    if progress.phase == Phase.SCALING:
        for v in fresh:
            allocs[v] = plan.final(v).allocations
            weights[v] = 0
        ready = _ready(observed, allocs)
        if all(ready.get(v, 0) >= allocs[v] for v in fresh):
            share = policy.steps[0]
            baking = Progress(
                _to(progress.phase, Phase.BAKING),
                now,
                progress.started_at,
                0,
                dict(counters),
                progress.floor_at_start,
            )
            return Decision(
                allocs, step_weights(plan, share), baking, f"traffic step {share}% to the new version(s)"
            )
        return Decision(allocs, weights, progress)
    # BAKING
    share = policy.steps[progress.step]
    weights = step_weights(plan, share)
    if (now - progress.since).total_seconds() < policy.bake_seconds:
        return Decision(allocs, weights, progress)
    delta = since(counters, progress.baseline)
    verdict = judge(policy, delta)
    if verdict is not None:
        return rollback(plan, progress, now, verdict)
    if delta.requests + delta.errors < policy.min_requests:
        return Decision(allocs, weights, progress, "")  # not enough traffic to judge yet
    if progress.step + 1 < len(policy.steps):
        nxt = policy.steps[progress.step + 1]
        stepped = replace(progress, step=progress.step + 1, since=now, baseline=dict(counters))
        return Decision(
            allocs, step_weights(plan, nxt), stepped, f"traffic step {nxt}% to the new version(s)"
        )
    draining = replace(progress, phase=_to(progress.phase, Phase.DRAINING), since=now)
    return _drain(plan, draining, allocs, weights, now)
