"""The workers' demand signal (modelfleet.core.demand)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from modelfleet.core.demand import NO_NODES_RATIO, Want, processor_demand_ratio


def test_ratio_of_wanted_to_live_processors() -> None:
    wants = [Want(2, 2), Want(1, 4)]  # 8 processors wanted
    assert processor_demand_ratio(wants, [4, 4]) == 1.0
    assert processor_demand_ratio(wants, [4]) == 2.0
    assert processor_demand_ratio(wants, [8, 8]) == 0.5
    assert processor_demand_ratio([], [4]) == 0.0
    assert processor_demand_ratio([], []) == 0.0
    assert processor_demand_ratio(wants, []) == NO_NODES_RATIO


@given(
    st.lists(st.tuples(st.integers(0, 64), st.integers(1, 32)), max_size=20),
    st.lists(st.integers(1, 256), min_size=1, max_size=20),
    st.integers(1, 256),
)
def test_more_nodes_never_raise_the_ratio(wants: list[tuple[int, int]], nodes: list[int], extra: int) -> None:
    w = [Want(a, t) for a, t in wants]
    before = processor_demand_ratio(w, nodes)
    assert before >= 0
    assert processor_demand_ratio(w, [*nodes, extra]) <= before
