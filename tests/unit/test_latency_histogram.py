"""The latency histogram nodes report and the canary's p95 gate reads: cumulative, differenced per
node (a reset counts from zero), merged over nodes, and its p95 within one bucket of the truth."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.core.latency import (
    BOUNDS_MS,
    BUCKETS,
    bucket_of,
    bucket_range,
    difference,
    merge,
    of_samples,
    p95_ms,
    quantile_ms,
    went_down,
)
from modelfleet.worker.stats import DeploymentStats
from schemas.stats import InferenceStats, LatencyHistogram

latencies = st.floats(min_value=0.0, max_value=300_000.0, allow_nan=False)


def true_quantile(samples: list[float], q: float) -> float:
    """The nearest-rank quantile: the ceil(q*n)-th smallest sample."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1]


def within_its_bucket(estimate: float, truth: float) -> bool:
    lower, upper = bucket_range(bucket_of(truth))
    if math.isinf(upper):  # above the last bound: the estimate says "at least the last bound"
        return estimate == lower
    return lower <= estimate <= upper


def test_buckets_are_fixed_log_spaced_and_bounded() -> None:
    assert BUCKETS == len(BOUNDS_MS) + 1 <= 100
    ratios = {round(b / a, 9) for a, b in pairwise(BOUNDS_MS)}
    assert ratios == {round(2**0.25, 9)}
    assert BOUNDS_MS[0] == 0.1 and BOUNDS_MS[-1] > 100_000
    assert bucket_of(0.0) == 0 and bucket_of(0.1) == 0 and bucket_of(0.1001) == 1
    assert bucket_of(1e9) == BUCKETS - 1 and bucket_of(math.nan) == BUCKETS - 1


@settings(max_examples=300, deadline=None)
@given(
    readings=st.lists(  # per node: the samples before the bake and those during it
        st.tuples(st.lists(latencies, max_size=30), st.lists(latencies, max_size=60)),
        min_size=1,
        max_size=4,
    ),
    q=st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]),
)
def test_the_quantile_of_merged_differences_is_within_one_bucket_of_the_truth(
    readings: list[tuple[list[float], list[float]]], q: float
) -> None:
    deltas = [difference(of_samples(before + during), of_samples(before)) for before, during in readings]
    merged = merge(deltas)
    during = [ms for _, d in readings for ms in d]
    assert sum(merged) == len(during)
    estimate = quantile_ms(merged, q)
    if not during:
        assert estimate is None
        return
    assert estimate is not None
    assert within_its_bucket(estimate, true_quantile(during, q)), (estimate, true_quantile(during, q))


@settings(max_examples=200, deadline=None)
@given(before=st.lists(latencies, min_size=1, max_size=40), after=st.lists(latencies, max_size=40))
def test_a_reset_counts_from_zero(before: list[float], after: list[float]) -> None:
    """The node restarted between readings: its counters went down, so the new reading is all new
    (as `core.autoscale` treats counters) and never a negative count."""
    old, new = of_samples(before + before), of_samples(after)
    delta = difference(new, old)
    assert all(n >= 0 for n in delta)
    if went_down(new, old):
        assert delta == new
    else:
        assert sum(delta) == sum(new) - sum(old)


@given(st.lists(st.lists(st.integers(0, 50), max_size=BUCKETS), max_size=5))
def test_merge_is_a_bucket_wise_sum_without_trailing_zeros(hists: list[list[int]]) -> None:
    merged = merge(hists)
    assert sum(merged) == sum(map(sum, hists))
    assert not merged or merged[-1] > 0
    assert merge([merged, ()]) == merged


def test_quantile_edges() -> None:
    assert p95_ms(()) is None and p95_ms((0, 0)) is None
    only_overflow = [0] * (BUCKETS - 1) + [3]
    assert p95_ms(only_overflow) == BOUNDS_MS[-1]
    with pytest.raises(ValueError):
        quantile_ms((1,), 0.0)


def test_the_schema_sums_and_validates() -> None:
    a = LatencyHistogram(counts=[1, 2])
    assert sum([a, LatencyHistogram(counts=[0, 0, 3])]).counts == [1, 2, 3]  # type: ignore[union-attr]
    assert InferenceStats.model_validate({"inference_count": 1}).latency_histogram.counts == []
    with pytest.raises(ValueError):
        LatencyHistogram(counts=[-1])
    with pytest.raises(ValueError):
        LatencyHistogram(counts=[1] * (BUCKETS + 1))


def test_the_node_counts_each_successful_request_at_its_run_duration() -> None:
    stats = DeploymentStats(clock=lambda: 1_000.0)
    stats.record_run(succeeded=3, failed=1, elapsed_ms=12.0)  # a batch of 4; one failed
    stats.record_run(succeeded=1, failed=0, elapsed_ms=400.0)
    stats.record_cache_hit(0.05)
    first = stats.snapshot().latency_histogram.counts
    assert sum(first) == 5
    assert first[bucket_of(12.0)] == 3 and first[bucket_of(400.0)] == 1 and first[0] == 1
    stats.record_run(succeeded=2, failed=0, elapsed_ms=12.0)
    second = stats.snapshot().latency_histogram.counts
    assert difference(second, first) == of_samples([12.0, 12.0])  # cumulative: readings difference
