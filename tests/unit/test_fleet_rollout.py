"""The fleet-rollout planner (modelfleet.core.fleet_rollout): waves, health gating, abort and the
rollback set, offline nodes, and the service state drawn from nodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.core.fleet_rollout import (
    NodeHealth,
    NodeProgress,
    NodeServing,
    Observation,
    Policy,
    RolloutState,
    ServiceState,
    Step,
    advance,
    aggregate_service_state,
    is_online,
    new_entries,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
UP = Observation(online=True)
HEALTHY = Observation(online=True, health=NodeHealth.HEALTHY)
DOWN = Observation(online=False)


def _progress(step: Step) -> dict[str, NodeProgress]:
    return {e.node_id: e.progress for e in step.entries}


def test_waves_hold_max_unavailable_and_wait_for_health() -> None:
    nodes = ["a", "b", "c", "d", "e"]
    policy = Policy(max_unavailable=2)
    step = advance(new_entries(nodes), dict.fromkeys(nodes, UP), policy, T0)
    assert step.assign == {"a", "b"}
    # a is healthy, b still starting: the next wave waits
    obs = {**dict.fromkeys(nodes, UP), "a": HEALTHY}
    step = advance(step.entries, obs, policy, T0)
    assert step.assign == frozenset() and _progress(step)["b"] is NodeProgress.UPDATING
    obs["b"] = HEALTHY
    step = advance(step.entries, obs, policy, T0)
    assert step.assign == {"c", "d"} and {e.wave for e in step.entries if e.node_id in "cd"} == {2}
    obs |= {"c": HEALTHY, "d": HEALTHY}
    step = advance(step.entries, obs, policy, T0)
    assert step.assign == {"e"}
    obs["e"] = HEALTHY
    step = advance(step.entries, obs, policy, T0)
    assert step.state is RolloutState.COMPLETED
    assert set(_progress(step).values()) == {NodeProgress.UPDATED}


def test_offline_nodes_are_assigned_but_never_hold_a_wave() -> None:
    nodes = ["a", "b", "c"]
    obs = {"a": DOWN, "b": UP, "c": UP}
    step = advance(new_entries(nodes), obs, Policy(max_unavailable=1), T0)
    assert step.assign == {"a", "b"}  # a is given the revision for when it returns; b takes the slot
    assert _progress(step) == {
        "a": NodeProgress.OFFLINE,
        "b": NodeProgress.UPDATING,
        "c": NodeProgress.PENDING,
    }
    step = advance(step.entries, {**obs, "b": HEALTHY}, Policy(max_unavailable=1), T0)
    assert step.assign == {"c"}
    step = advance(step.entries, {**obs, "b": HEALTHY, "c": HEALTHY}, Policy(max_unavailable=1), T0)
    assert step.state is RolloutState.COMPLETED and _progress(step)["a"] is NodeProgress.OFFLINE
    # it comes back after completion: its entry follows its report
    back = advance(step.entries, {"a": HEALTHY, "b": HEALTHY, "c": HEALTHY}, Policy(), T0, step.state)
    assert _progress(back)["a"] is NodeProgress.UPDATED and back.assign == frozenset()


def test_a_node_going_silent_mid_update_shows_offline() -> None:
    step = advance(new_entries(["a"]), {"a": UP}, Policy(), T0)
    step = advance(step.entries, {"a": DOWN}, Policy(), T0 + timedelta(seconds=5))
    assert _progress(step)["a"] is NodeProgress.OFFLINE and step.state is RolloutState.COMPLETED


def test_abort_after_min_nodes_rolls_back_every_assigned_node() -> None:
    nodes = ["a", "b", "c", "d"]
    policy = Policy(max_unavailable=2, abort_failure_percent=50, abort_min_nodes=2)
    step = advance(new_entries(nodes), dict.fromkeys(nodes, UP), policy, T0)
    failed = Observation(online=True, health=NodeHealth.FAILED, reason="health check failed")
    # one failure alone is below abort_min_nodes: keep going
    step = advance(step.entries, {**dict.fromkeys(nodes, UP), "a": failed}, policy, T0)
    assert step.state is RolloutState.IN_PROGRESS and step.revert == frozenset()
    step = advance(step.entries, {**dict.fromkeys(nodes, UP), "a": failed, "b": HEALTHY}, policy, T0)
    assert step.state is RolloutState.ABORTED
    assert step.revert == {"a", "b"}
    assert _progress(step) == {
        "a": NodeProgress.ROLLED_BACK,
        "b": NodeProgress.ROLLED_BACK,
        "c": NodeProgress.PENDING,
        "d": NodeProgress.PENDING,
    }
    assert next(e for e in step.entries if e.node_id == "a").reason == "health check failed"
    final = advance(step.entries, dict.fromkeys(nodes, HEALTHY), policy, T0, step.state)
    assert final.state is RolloutState.ABORTED and final.assign == final.revert == frozenset()


def test_a_node_that_never_turns_healthy_times_out() -> None:
    policy = Policy(node_timeout=timedelta(seconds=60), abort_failure_percent=100)
    step = advance(new_entries(["a"]), {"a": UP}, policy, T0)
    step = advance(step.entries, {"a": UP}, policy, T0 + timedelta(seconds=61))
    assert step.state is RolloutState.ABORTED and "not healthy within 60s" in step.entries[0].reason


def test_is_online() -> None:
    assert is_online(T0, T0 + timedelta(seconds=3), timedelta(seconds=3))
    assert not is_online(T0, T0 + timedelta(seconds=4), timedelta(seconds=3))
    assert not is_online(None, T0, timedelta(seconds=3))


@st.composite
def _script(draw: st.DrawFn) -> tuple[list[str], Policy, list[dict[str, Observation]]]:
    n = draw(st.integers(1, 8))
    nodes = [f"n{i}" for i in range(n)]
    policy = Policy(
        max_unavailable=draw(st.integers(1, 4)),
        abort_failure_percent=draw(st.sampled_from([10.0, 50.0, 100.0])),
        abort_min_nodes=draw(st.integers(1, 4)),
    )
    obs = st.sampled_from(
        [UP, DOWN, HEALTHY, Observation(True, NodeHealth.FAILED, "x"), Observation(True, NodeHealth.STARTING)]
    )
    rounds = draw(st.lists(st.fixed_dictionaries(dict.fromkeys(nodes, obs)), min_size=1, max_size=12))
    return nodes, policy, rounds


@settings(max_examples=300, deadline=None)
@given(_script())
def test_invariants_under_any_reports(script: tuple[list[str], Policy, list[dict[str, Observation]]]) -> None:
    nodes, policy, rounds = script
    entries = new_entries(nodes)
    state = RolloutState.IN_PROGRESS
    assigned: set[str] = set()
    for i, obs in enumerate(rounds):
        step = advance(entries, obs, policy, T0 + timedelta(seconds=i), state)
        updating = sum(e.progress is NodeProgress.UPDATING for e in step.entries)
        # never more reachable nodes updating than allowed
        assert updating <= policy.max_unavailable
        assert not (step.assign & assigned)  # each node is handed the new model once
        assigned |= step.assign
        if step.state is RolloutState.ABORTED and state is RolloutState.IN_PROGRESS:
            assert step.revert == assigned  # the rollback set is exactly what was handed out
        else:
            assert step.revert == frozenset()
        if state is not RolloutState.IN_PROGRESS:
            assert step.assign == frozenset() and step.state is state
        entries, state = step.entries, step.state
    # all healthy from here on: the rollout always ends
    for i in range(len(nodes) + 2):
        step = advance(
            entries, dict.fromkeys(nodes, HEALTHY), policy, T0 + timedelta(hours=1, seconds=i), state
        )
        entries, state = step.entries, step.state
    assert state is not RolloutState.IN_PROGRESS


def test_service_state() -> None:
    r, s, f, o = NodeServing.RUNNING, NodeServing.STARTING, NodeServing.FAILED, NodeServing.OFFLINE
    assert aggregate_service_state([r, r], False) is ServiceState.RUNNING
    assert aggregate_service_state([r, o], False) is ServiceState.CONCERNING
    assert aggregate_service_state([r, f], False) is ServiceState.CONCERNING
    assert aggregate_service_state([f, o], False) is ServiceState.FAILED
    assert aggregate_service_state([s, r], False) is ServiceState.DEPLOYING
    assert aggregate_service_state([o, o], False) is ServiceState.CONCERNING
    assert aggregate_service_state([r, r], True) is ServiceState.DEPLOYING


def test_a_node_back_from_offline_converges_outside_the_waves() -> None:
    policy = Policy(max_unavailable=1)
    step = advance(new_entries(["a", "b", "c"]), {"a": DOWN, "b": UP, "c": UP}, policy, T0)
    assert _progress(step)["a"] is NodeProgress.OFFLINE and step.assign == {"a", "b"}
    # a returns while b holds the only slot: it converges without taking one, and c still waits
    step = advance(step.entries, {"a": UP, "b": UP, "c": UP}, policy, T0)
    assert _progress(step) == {
        "a": NodeProgress.CONVERGING,
        "b": NodeProgress.UPDATING,
        "c": NodeProgress.PENDING,
    }
    step = advance(step.entries, {"a": UP, "b": HEALTHY, "c": UP}, policy, T0)
    assert step.assign == {"c"}
    step = advance(step.entries, {"a": UP, "b": HEALTHY, "c": HEALTHY}, policy, T0)
    assert step.state is RolloutState.IN_PROGRESS  # a reachable node still converging holds it open
    step = advance(step.entries, {"a": HEALTHY, "b": HEALTHY, "c": HEALTHY}, policy, T0)
    assert step.state is RolloutState.COMPLETED
