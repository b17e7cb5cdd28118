"""A service's weighted versions at the gateway: the split is exact, and a version with no ready
instance never gets a request (its share goes to the others)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from modelfleet.core.lifecycle import DeploymentState
from modelfleet.gateway.routing_table import DeploymentEntry, VersionRoutes


def entry(weights: dict[str, int], ready: dict[str, bool]) -> DeploymentEntry:
    versions = [
        VersionRoutes(v, f"m-{v}", w, None, None, {f"tcp://node-{v}:1": 1} if ready[v] else {})
        for v, w in weights.items()
    ]
    return DeploymentEntry("p", "svc", "uid", DeploymentState.STARTED, "", versions, 0.0)


def test_70_30_is_exact_over_2000_requests() -> None:
    e = entry({"1.0.0": 70, "2.0.0": 30}, {"1.0.0": True, "2.0.0": True})
    counts = Counter(pick[0].version_id for _ in range(2000) if (pick := e.pick()) is not None)
    assert counts == {"1.0.0": 1400, "2.0.0": 600}


@given(
    st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 100), min_size=1),
    st.data(),
)
def test_never_routes_to_a_version_without_ready_instances(
    weights: dict[str, int], data: st.DataObject
) -> None:
    ready = {v: data.draw(st.booleans(), label=v) for v in weights}
    e = entry(weights, ready)
    picks = [e.pick() for _ in range(200)]
    if not any(ready.values()):
        assert all(p is None for p in picks)
        return
    chosen = Counter(p[0].version_id for p in picks if p is not None)
    assert set(chosen) <= {v for v, r in ready.items() if r}
    live_total = sum(w for v, w in weights.items() if ready[v])
    for v, n in chosen.items():  # the ready versions share the traffic by their weights
        assert abs(n - 200 * weights[v] / live_total) <= 1.0
