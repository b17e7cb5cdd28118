"""A loaded deployment's inference counters, driven by a fake clock."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.worker.stats import RECENT_RUNS, DeploymentStats


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_counters_and_totals() -> None:
    clock = FakeClock()
    stats = DeploymentStats(clock)
    stats.record_access()
    stats.record_run(succeeded=3, failed=1, elapsed_ms=8.0)  # one batch of 4, one failed
    stats.record_run(succeeded=1, failed=0, elapsed_ms=2.0)
    stats.record_cache_hit(0.5)
    stats.record_error()
    stats.record_timeout(2)
    stats.record_rejected()
    s = stats.snapshot(pending=5)
    assert s.inference_count == 5  # 3 + 1 + the cache hit
    assert s.error_count == 2
    assert s.timeout_count == 2
    assert s.rejected_execution_count == 1
    assert s.inference_cache_hit_count == 1 and s.inference_cache_hit_count_last_minute == 1
    assert s.number_of_pending_requests == 5
    # a batch's time is shared by its requests; the failed one's share is not inference time
    assert s.total_inference_time_ms == 6.0 + 2.0 + 0.5
    assert s.total_inference_time_ms_excluding_cache_hits == 6.0 + 2.0
    assert s.batches == 2 and s.batched_requests == 5
    assert s.throughput_last_minute == 5 and s.peak_throughput_per_minute == 5
    assert s.average_inference_time_ms_last_minute == 8.5 / 5
    assert s.last_access_ms == 1_000_000_000
    assert stats.recent_runs() == [(4, 8.0), (1, 2.0)]  # model runs only, oldest first


def test_only_the_last_runs_are_kept() -> None:
    stats = DeploymentStats(FakeClock())
    for i in range(RECENT_RUNS + 5):
        stats.record_run(succeeded=i % 7 + 1, failed=0, elapsed_ms=float(i))
    runs = stats.recent_runs()
    assert len(runs) == RECENT_RUNS
    assert runs[0] == (5 % 7 + 1, 5.0) and runs[-1] == ((RECENT_RUNS + 4) % 7 + 1, float(RECENT_RUNS + 4))


def test_the_last_minute_slides_and_the_peak_stays() -> None:
    clock = FakeClock()
    stats = DeploymentStats(clock)
    for _ in range(10):
        stats.record_run(1, 0, 1.0)
    clock.now += 30
    for _ in range(5):
        stats.record_run(1, 0, 3.0)
    s = stats.snapshot()
    assert s.throughput_last_minute == 15 and s.peak_throughput_per_minute == 15
    clock.now += 31  # the first ten are now older than a minute
    s = stats.snapshot()
    assert s.throughput_last_minute == 5
    assert s.average_inference_time_ms_last_minute == 3.0
    assert s.peak_throughput_per_minute == 15
    clock.now += 3600
    s = stats.snapshot()
    assert s.throughput_last_minute == 0 and s.average_inference_time_ms_last_minute == 0.0
    assert s.inference_count == 15 and s.peak_throughput_per_minute == 15


def test_a_clock_going_back_loses_nothing() -> None:
    clock = FakeClock()
    stats = DeploymentStats(clock)
    stats.record_run(1, 0, 1.0)
    clock.now -= 5
    stats.record_run(1, 0, 1.0)
    assert stats.snapshot().throughput_last_minute == 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 40), st.integers(0, 4), st.booleans()), max_size=60))
def test_last_minute_figures_match_a_recount(events: list[tuple[float, int, bool]]) -> None:
    """Against a recount of the events in the 60 one-second buckets ending at the clock's second."""
    clock = FakeClock(500.0)
    stats = DeploymentStats(clock)
    seen: list[tuple[int, int, float, int]] = []  # (second, count, time, hits)
    peak = 0
    for step, count, hit in events:
        clock.now += step
        second = int(clock.now)
        if hit:
            stats.record_cache_hit(0.25)
            seen.append((second, 1, 0.25, 1))
        else:
            stats.record_run(count, 0, 2.0)
            seen.append((second, count, 2.0 if count else 0.0, 0))
        window = [e for e in seen if e[0] > second - 60]
        peak = max(peak, sum(e[1] for e in window))
    s = stats.snapshot()
    window = [e for e in seen if e[0] > int(clock.now) - 60]
    count = sum(e[1] for e in window)
    assert s.throughput_last_minute == count
    assert s.inference_cache_hit_count_last_minute == sum(e[3] for e in window)
    assert s.peak_throughput_per_minute == peak
    expected_avg = sum(e[2] for e in window) / count if count else 0.0
    assert abs(s.average_inference_time_ms_last_minute - expected_avg) < 1e-9
    assert s.inference_count == sum(e[1] for e in seen)
