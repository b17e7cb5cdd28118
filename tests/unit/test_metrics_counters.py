"""The gateway's in-process inference counters and their Prometheus exposition."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from modelfleet.core.lifecycle import DeploymentState, NodeState
from modelfleet.observability.exposition import StoreSnapshot, exposition
from modelfleet.observability.metrics import BUCKETS, InferenceMetrics
from schemas.deployments import DeploymentRecord, VersionSpec
from schemas.nodes import NodeKind, NodeRecord
from schemas.stats import InferenceStats

T0 = 1_800_000_000.0
NOW = datetime.fromtimestamp(T0, UTC)


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def record(project: str, deployment: str, uid: str) -> DeploymentRecord:
    return DeploymentRecord(
        project_id=project,
        deployment_id=deployment,
        uid=uid,
        state=DeploymentState.STARTED,
        versions=[
            VersionSpec(version_id="1", model_id="m", weight=100, allocations=1, threads_per_allocation=1)
        ],
        created_at=NOW,
        updated_at=NOW,
        state_since=NOW,
    )


def node(node_id: str, state: NodeState, project: str | None = None) -> NodeRecord:
    return NodeRecord(
        node_id=node_id,
        kind=NodeKind.EDGE if project else NodeKind.CLOUD,
        processors=2,
        memory_bytes=2**30,
        url="http://n",
        state=state,
        project_id=project,
        registered_at=NOW,
        updated_at=NOW,
    )


def test_chart_points_per_second_with_percentiles() -> None:
    m = InferenceMetrics()
    for i in range(100):
        m.observe("p", "d", "1", 200, (i + 1) / 1000, T0 + 0.5)
    m.observe("p", "d", "1", 429, 0.001, T0 + 1.2)
    m.observe("p", "d", "1", 500, 0.001, T0 + 1.3)
    m.observe("p", "d", "1", 404, 0.001, T0 + 1.4)  # the caller's mistake, not an error of the deployment
    points = m.chart("p", "d", T0 + 2.5, seconds=3)
    assert [p.at for p in points] == [int(T0) - 1, int(T0), int(T0) + 1]
    assert points[0].requests == 0 and points[0].p50_ms is None
    assert points[1].requests == 100 and points[1].errors == 0
    assert points[1].p50_ms is not None and 49 <= points[1].p50_ms <= 52
    assert points[1].p99_ms is not None and 98 <= points[1].p99_ms <= 100
    assert (points[2].requests, points[2].rejected, points[2].errors) == (3, 1, 1)
    assert m.chart("p", "other", T0 + 2.5, seconds=3)[1].requests == 0


def test_old_seconds_leave_the_window() -> None:
    m = InferenceMetrics(window_seconds=10)
    m.observe("p", "d", "1", 200, 0.001, T0)
    m.observe("p", "d", "1", 200, 0.001, T0 + 30)
    assert sum(p.requests for p in m.chart("p", "d", T0 + 31, seconds=40)) == 1
    assert m.series[("p", "d", "1")].count == 2  # cumulative counters keep everything


@given(st.lists(st.tuples(st.sampled_from([200, 429, 500]), st.floats(0, 20)), min_size=1, max_size=60))
def test_the_histogram_is_cumulative_and_counts_every_answer(answers: list[tuple[int, float]]) -> None:
    m = InferenceMetrics()
    for status, seconds in answers:
        m.observe("p", "d", "1", status, seconds, T0)
    s = samples(exposition(m, StoreSnapshot([], {}, {}, {}), None, T0))
    labels = (("deployment", "d"), ("project", "p"), ("version", "1"))
    buckets = [
        s[("modelfleet_inference_latency_seconds_bucket", tuple(sorted((*labels, ("le", le)))))]
        for le in [*(str(b) for b in BUCKETS), "+Inf"]
    ]
    assert buckets == sorted(buckets) and buckets[-1] == len(answers)
    assert s[("modelfleet_inference_latency_seconds_count", labels)] == len(answers)
    for status in (200, 429, 500):
        n = sum(1 for a, _ in answers if a == status)
        key = ("modelfleet_inference_requests_total", tuple(sorted((*labels, ("code", str(status))))))
        assert s.get(key, 0) == n
    assert s[("modelfleet_inference_rejections_total", labels)] == sum(1 for a, _ in answers if a == 429)


def test_a_project_sees_only_its_own_series_and_nodes() -> None:
    m = InferenceMetrics()
    m.observe("alpha", "a", "1", 200, 0.002, T0)
    m.observe("beta", "b", "1", 200, 0.002, T0)
    store = StoreSnapshot(
        nodes=[
            node("node-1", NodeState.READY),
            node("node-2", NodeState.LOST),
            node("edge-b", NodeState.READY, "beta"),
        ],
        heartbeats={"node-1": T0 - 2},
        stats={"node-1": {"ua/1": InferenceStats(number_of_pending_requests=3, inference_cache_hit_count=7)}},
        deployments={"ua": record("alpha", "a", "ua")},
    )
    text = exposition(m, store, "alpha", T0)
    s = samples(text)
    assert b'project="beta"' not in text and b"edge-b" not in text
    key = (("deployment", "a"), ("node", "node-1"), ("project", "alpha"), ("version", "1"))
    assert s[("modelfleet_queue_depth", key)] == 3
    assert s[("modelfleet_cache_hits_total", key)] == 7
    assert s[("modelfleet_node_up", (("node", "node-1"), ("state", "ready")))] == 1
    assert s[("modelfleet_node_up", (("node", "node-2"), ("state", "lost")))] == 0
    assert s[("modelfleet_node_heartbeat_age_seconds", (("node", "node-1"),))] == 2
    everything = exposition(m, store, None, T0)
    assert b'project="beta"' in everything and b"edge-b" in everything
