"""The pure rollout planner: rolling upgrades keep their floor and ceiling and always finish;
canaries step, bake, and roll back on a breach."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.core.errors import ValidationFailed
from modelfleet.core.latency import of_samples
from modelfleet.core.rollout import (
    Counters,
    Observed,
    Phase,
    Plan,
    Policy,
    Slot,
    Strategy,
    judge,
    linear_steps,
    next_step,
    since,
    start,
    step_weights,
    surge_count,
    unavailable_count,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TIMEOUT = timedelta(hours=1)


def simulate_rolling(
    old: int, new: int, surge: int, unavailable: int, speeds: list[int], grace: float = 2.0
) -> tuple[list[tuple[int, int]], Phase, dict[str, int], int]:
    """Run a v1 -> v2 rolling upgrade; nodes make up to speeds[i] wanted instances ready per tick.
    Returns (ready, wanted) per tick, the last phase, the final allocations and the floor."""
    plan = Plan(
        old={"v1": Slot(old, 100)},
        new={"v2": Slot(new, 100)},
        policy=Policy(Strategy.ROLLING, max_surge=surge, max_unavailable=unavailable, grace_seconds=grace),
    )
    allocs = {"v1": old, "v2": 0}
    weights = {"v1": 100, "v2": 0}
    ready = {"v1": old, "v2": 0}
    obs = {v: Observed(allocs[v], weights[v], ready[v]) for v in allocs}
    progress = start(plan, obs, T0)
    floor = min(max(0, new - unavailable), old)
    trace = []
    now = T0
    for i in range(400):
        now = T0 + timedelta(seconds=i)
        obs = {v: Observed(allocs[v], weights[v], ready[v]) for v in allocs}
        d = next_step(plan, progress, obs, {}, now, TIMEOUT)
        progress = d.progress
        allocs = {v: d.allocations.get(v, 0) for v in allocs}
        weights = {v: d.weights.get(v, 0) for v in allocs}
        # removals take ready capacity away at once; additions become ready over the next ticks
        ready = {v: min(ready[v], allocs[v]) for v in allocs}
        trace.append((sum(ready.values()), sum(allocs.values())))
        if d.finished:
            break
        speed = speeds[i % len(speeds)]
        ready = {v: min(allocs[v], ready[v] + speed) for v in allocs}
    return trace, progress.phase, allocs, floor


@settings(max_examples=300, deadline=None)
@given(
    old=st.integers(1, 5),
    new=st.integers(1, 5),
    surge=st.integers(0, 3),
    unavailable=st.integers(0, 3),
    speeds=st.lists(st.integers(0, 2), min_size=1, max_size=6).filter(any),
)
def test_rolling_keeps_floor_and_ceiling_and_finishes(
    old: int, new: int, surge: int, unavailable: int, speeds: list[int]
) -> None:
    if surge == 0 and unavailable == 0:
        surge = 1
    trace, phase, allocs, floor = simulate_rolling(old, new, surge, unavailable, speeds)
    assert phase == Phase.DONE
    assert allocs == {"v1": 0, "v2": new}
    assert all(ready >= floor for ready, _ in trace), trace
    assert all(wanted <= max(old, new + surge) for _, wanted in trace), trace


def test_rolling_drains_the_old_version_before_removing_it() -> None:
    trace, phase, _, _ = simulate_rolling(2, 2, 1, 0, [1], grace=3.0)
    assert phase == Phase.DONE
    # the old version's last instance stays while draining (weight 0) for the grace period
    assert trace[-2][1] == 3 and trace[-1][1] == 2


def test_a_failing_incoming_version_rolls_back() -> None:
    plan = Plan({"v1": Slot(2, 100)}, {"v2": Slot(2, 100)}, Policy())
    progress = start(plan, {"v1": Observed(2, 100, 2)}, T0)
    obs = {"v1": Observed(2, 100, 2), "v2": Observed(1, 100, 0, failed=1)}
    d = next_step(plan, progress, obs, {}, T0, TIMEOUT)
    assert d.progress.phase == Phase.ROLLED_BACK and "failed to load" in d.progress.reason
    assert d.allocations == {"v1": 2, "v2": 0} and d.weights == {"v1": 100, "v2": 0}


def test_instances_not_ready_by_the_deploy_timeout_roll_back() -> None:
    plan = Plan({"v1": Slot(1, 100)}, {"v2": Slot(1, 100)}, Policy())
    progress = start(plan, {"v1": Observed(1, 100, 1)}, T0)
    obs = {"v1": Observed(1, 100, 1), "v2": Observed(1, 100, 0)}
    d = next_step(plan, progress, obs, {}, T0 + timedelta(seconds=61), timedelta(seconds=60))
    assert d.progress.phase == Phase.ROLLED_BACK and "not ready within 60s" in d.progress.reason


def canary(steps: tuple[int, ...] = (10, 50, 100)) -> Plan:
    policy = Policy(Strategy.CANARY, steps=steps, bake_seconds=10, max_error_rate=0.1, min_requests=5)
    return Plan({"old": Slot(1, 100)}, {"new": Slot(1, 100)}, policy)


def run_canary(
    plan: Plan, errors_per_tick: int, requests_per_tick: int, latency_ms: float = 5.0
) -> tuple[Phase, list[dict[str, int]], str]:
    obs = {"old": Observed(1, 100, 1), "new": Observed(0, 0, 0)}
    progress = start(plan, obs, T0)
    route = Counters()  # the new version's route on node n1, cumulative
    weights_seen = []
    for i in range(200):
        now = T0 + timedelta(seconds=i)
        d = next_step(plan, progress, obs, {"n1/new": route}, now, TIMEOUT)
        progress = d.progress
        weights_seen.append(d.weights)
        if d.finished:
            break
        obs = {v: Observed(d.allocations[v], d.weights[v], d.allocations[v]) for v in d.allocations}
        if d.weights.get("new"):
            route = route.plus(
                Counters(
                    requests_per_tick,
                    errors_per_tick,
                    latency_ms * requests_per_tick,
                    of_samples([latency_ms] * requests_per_tick),
                )
            )
    return progress.phase, weights_seen, progress.reason


def test_a_healthy_canary_steps_through_its_traffic_shares() -> None:
    phase, weights, _ = run_canary(canary(), errors_per_tick=0, requests_per_tick=3)
    assert phase == Phase.DONE
    shares = []
    for w in weights:
        total = w.get("old", 0) + w.get("new", 0)
        share = round(100 * w.get("new", 0) / total) if total else 0
        if not shares or shares[-1] != share:
            shares.append(share)
    assert shares == [0, 10, 50, 100]


def test_a_failing_canary_rolls_back_to_the_old_version() -> None:
    phase, weights, _ = run_canary(canary(), errors_per_tick=3, requests_per_tick=1)
    assert phase == Phase.ROLLED_BACK
    assert weights[-1] == {"old": 100, "new": 0}


def test_a_canary_without_traffic_keeps_baking() -> None:
    phase, _, _ = run_canary(canary(), errors_per_tick=0, requests_per_tick=0)
    assert phase == Phase.BAKING


def test_judge_reads_the_error_rate_and_the_p95() -> None:
    policy = Policy(Strategy.CANARY, steps=(100,), max_error_rate=0.05, max_p95_latency_ms=20.0)
    fast = of_samples([5.0] * 100)
    # 94 fast requests and 6 slow ones: the mean (about 9 ms) passes, the p95 (the 95th) does not
    tail = of_samples([5.0] * 94 + [80.0] * 6)
    assert judge(policy, Counters(100, 4, 500.0, fast)) is None
    assert "error rate" in (judge(policy, Counters(90, 10, 450.0, fast)) or "")
    verdict = judge(policy, Counters(100, 0, 950.0, tail)) or ""
    assert "p95 latency" in verdict and "max_p95_latency_ms 20" in verdict
    # 96 fast: the 95th is fast, the p95 passes although 4% are slow
    assert judge(policy, Counters(100, 0, 800.0, of_samples([5.0] * 96 + [80.0] * 4))) is None
    assert judge(Policy(Strategy.CANARY, steps=(100,)), Counters(100, 0, 8000.0, tail)) is None


def test_a_slow_canary_rolls_back_on_its_p95() -> None:
    plan = canary()
    plan = Plan(plan.old, plan.new, replace(plan.policy, max_p95_latency_ms=50.0))
    phase, weights, reason = run_canary(plan, errors_per_tick=0, requests_per_tick=3, latency_ms=120.0)
    assert phase == Phase.ROLLED_BACK and "p95 latency" in reason, reason
    assert weights[-1] == {"old": 100, "new": 0}
    phase, _, _ = run_canary(plan, errors_per_tick=0, requests_per_tick=3, latency_ms=10.0)
    assert phase == Phase.DONE


def test_the_bake_differences_per_route_and_a_restart_counts_from_zero() -> None:
    before = {
        "n1/new": Counters(100, 0, 100.0, of_samples([1.0] * 100)),
        "n2/new": Counters(50, 0, 50.0, of_samples([1.0] * 50)),
    }
    after = {
        "n1/new": Counters(110, 1, 110.0, of_samples([1.0] * 100 + [200.0] * 10)),
        "n2/new": Counters(4, 3, 4.0, of_samples([300.0] * 4)),  # restarted: everything is new
        "n3/new": Counters(2, 0, 2.0, of_samples([1.0] * 2)),  # appeared: counts from zero
    }
    delta = since(after, before)
    assert (delta.requests, delta.errors) == (16, 4)
    assert sum(delta.latency) == 16
    assert delta.p95_ms is not None and delta.p95_ms > 150.0  # the slow requests are all seen
    assert since(before, before) == Counters(0, 0, 0.0, ())
    assert since({}, before) == Counters()  # gone routes add nothing


@given(st.integers(1, 100), st.integers(1, 100), st.integers(1, 99))
def test_step_weights_give_the_new_versions_their_share(old_w: int, new_w: int, share: int) -> None:
    plan = Plan({"a": Slot(1, old_w)}, {"b": Slot(1, new_w)}, Policy(Strategy.CANARY, steps=(share, 100)))
    w = step_weights(plan, share)
    assert all(0 <= v <= 100 for v in w.values())
    assert w["b"] > 0 and w["a"] > 0
    assert abs(100 * w["b"] / (w["a"] + w["b"]) - share) <= 1.5


def test_counts_and_steps() -> None:
    assert surge_count(0.25, 4) == 1 and surge_count(0.3, 4) == 2 and surge_count(2, 4) == 2
    assert unavailable_count(0.3, 4) == 1 and unavailable_count(1, 4) == 1
    assert linear_steps(30) == (30, 60, 90, 100)
    with pytest.raises(ValidationFailed):
        Policy(Strategy.CANARY, steps=(50, 20, 100))
    with pytest.raises(ValidationFailed):
        Policy(Strategy.ROLLING, max_surge=0, max_unavailable=0)


def test_a_weights_only_update_finishes_at_once() -> None:
    plan = Plan({"a": Slot(1, 70), "b": Slot(1, 30)}, {"a": Slot(1, 50), "b": Slot(1, 50)}, Policy())
    obs = {"a": Observed(1, 70, 1), "b": Observed(1, 30, 1)}
    d = next_step(plan, start(plan, obs, T0), obs, {}, T0, TIMEOUT)
    assert d.progress.phase == Phase.DONE
    assert d.weights == {"a": 50, "b": 50} and d.allocations == {"a": 1, "b": 1}


def test_a_canary_mixes_kept_versions_between_the_old_and_new_split() -> None:
    plan = Plan(
        {"a": Slot(1, 100)}, {"a": Slot(1, 50), "b": Slot(1, 50)}, Policy(Strategy.CANARY, steps=(50, 100))
    )
    assert step_weights(plan, 50) == {"a": 100, "b": 33}  # 75% / 25%
    assert step_weights(plan, 100) == {"a": 100, "b": 100}


def test_a_rollout_stored_before_p95_and_per_route_baselines_still_loads() -> None:
    from modelfleet.control.rollouts import dump_rollout, load_rollout

    plan = Plan({"old": Slot(1, 100)}, {"new": Slot(1, 100)}, Policy(Strategy.CANARY, steps=(100,)))
    stored = dump_rollout(plan, start(plan, {}, T0))
    stored["plan"]["policy"]["max_latency_ms"] = stored["plan"]["policy"].pop("max_p95_latency_ms")
    stored["plan"]["policy"]["max_latency_ms"] = 40.0
    stored["progress"]["baseline"] = {"requests": 3, "errors": 0, "time_ms": 1.5}
    loaded, progress = load_rollout(stored)
    assert loaded.policy.max_p95_latency_ms == 40.0 and progress.baseline == {}
    reading = {"n1/new": Counters(5, 1, 2.0, of_samples([3.0] * 5))}
    again = load_rollout(dump_rollout(loaded, replace(progress, baseline=reading)))[1]
    assert again.baseline == reading
