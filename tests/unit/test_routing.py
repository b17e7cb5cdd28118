from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.core.routing import WrrState, pick_route, pick_weighted


def run_picks(
    weights: Mapping[str, int], picks: int, state: WrrState | None = None
) -> tuple[Counter[str], WrrState]:
    state = state or WrrState(current={})
    counts: Counter[str] = Counter()
    for _ in range(picks):
        key, state = pick_weighted(weights, state)
        assert key is not None
        counts[key] += 1
    return counts, state


weights_strategy = st.dictionaries(
    st.sampled_from([f"node-{i}" for i in range(8)]), st.integers(min_value=0, max_value=12), max_size=8
).filter(lambda w: sum(w.values()) > 0)


def test_70_30_over_2000_picks_is_exact() -> None:
    counts, _ = run_picks({"a": 70, "b": 30}, 2000)
    assert counts == {"a": 1400, "b": 600}


def test_smooth_interleaving_not_bursts() -> None:
    picks = []
    state = WrrState(current={})
    for _ in range(7):
        key, state = pick_weighted({"a": 5, "b": 1, "c": 1}, state)
        picks.append(key)
    assert picks == ["a", "a", "b", "a", "c", "a", "a"]  # nginx's documented sequence


def test_empty_and_all_zero_weights_pick_nothing() -> None:
    state = WrrState(current={"a": 3})
    assert pick_weighted({}, state) == (None, state)
    assert pick_weighted({"a": 0, "b": 0}, state) == (None, state)
    assert pick_weighted({"a": -4}, state) == (None, state)


def test_zero_and_negative_weights_are_never_picked() -> None:
    counts, state = run_picks({"a": 0, "b": 3, "c": -2, "d": 1}, 400)
    assert set(counts) == {"b", "d"}
    assert counts == {"b": 300, "d": 100}
    assert set(state.current) == {"b", "d"}


def test_key_set_change_drops_stale_keys_and_starts_new_keys_at_zero() -> None:
    _, state = run_picks({"a": 2, "b": 1}, 2)
    assert set(state.current) == {"a", "b"}
    key, state = pick_weighted({"b": 1, "c": 1}, state)
    assert set(state.current) == {"b", "c"}
    assert key in {"b", "c"}
    # After the change, counts still converge to the new weights.
    counts, _ = run_picks({"b": 1, "c": 1}, 1000, state)
    assert abs(counts["b"] - counts["c"]) <= 2
    assert "a" not in counts


def test_input_state_is_not_mutated() -> None:
    state = WrrState(current={"a": 1, "b": -1})
    pick_weighted({"a": 1, "b": 1}, state)
    assert state.current == {"a": 1, "b": -1}


def test_pick_route_weights_by_allocations() -> None:
    state = WrrState(current={})
    counts: Counter[str] = Counter()
    for _ in range(60):
        node, state = pick_route({"node-1": 1, "node-2": 2, "node-3": 0}, state)
        assert node is not None
        counts[node] += 1
    assert counts == {"node-1": 20, "node-2": 40}


@settings(max_examples=150, deadline=None, database=None)
@given(weights=weights_strategy, cycles=st.integers(min_value=1, max_value=3))
def test_full_cycles_are_exactly_proportional(weights: dict[str, int], cycles: int) -> None:
    total = sum(w for w in weights.values() if w > 0)
    state = WrrState(current={})
    for cycle in range(1, cycles + 1):
        counts, state = run_picks(weights, total, state)
        assert counts == {k: w for k, w in weights.items() if w > 0}, cycle
        assert all(v == 0 for v in state.current.values())  # back to the start after each cycle


@settings(max_examples=150, deadline=None, database=None)
@given(weights=weights_strategy)
def test_no_key_is_ever_a_whole_pick_ahead_of_its_share(weights: dict[str, int]) -> None:
    # Provable for smooth WRR: count_k - t * w_k / W = -current_k / W and current_k > -W.
    total = sum(w for w in weights.values() if w > 0)
    state = WrrState(current={})
    counts: Counter[str] = Counter()
    for t in range(1, 2 * total + 1):
        key, state = pick_weighted(weights, state)
        assert key is not None
        counts[key] += 1
        for k, w in weights.items():
            if w > 0:
                assert counts[k] * total < t * w + total


@settings(max_examples=150, deadline=None, database=None)
@given(a=st.integers(min_value=1, max_value=100), b=st.integers(min_value=1, max_value=100))
def test_two_keys_stay_within_one_pick_of_exact_share(a: int, b: int) -> None:
    total = a + b
    state = WrrState(current={})
    counts: Counter[str] = Counter()
    for t in range(1, total + 1):
        key, state = pick_weighted({"a": a, "b": b}, state)
        assert key is not None
        counts[key] += 1
        assert abs(counts["a"] * total - t * a) < total
        assert abs(counts["b"] * total - t * b) < total


@settings(max_examples=100, deadline=None, database=None)
@given(weights=weights_strategy, picks=st.integers(min_value=0, max_value=50))
def test_deterministic(weights: dict[str, int], picks: int) -> None:
    assert run_picks(weights, picks) == run_picks(weights, picks)
