"""The adaptive allocations policy, driven by an injected clock (a sequence of datetimes)."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.core.autoscale import (
    AdaptiveSettings,
    AutoscaleContext,
    AutoscaleResult,
    AutoscaleSettings,
    Counters,
    KalmanEstimate,
    ScalerState,
    StatsReading,
    activity_between,
    decide_allocations,
    kalman_update,
    scale_from_zero,
)
from modelfleet.core.errors import ValidationFailed
from schemas.stats import InferenceStats

START = datetime(2025, 1, 1, tzinfo=UTC)
TICK = timedelta(seconds=10)
PROPS = settings(max_examples=80, deadline=None, database=None)


def clock(count: int, start: datetime = START, every: timedelta = TICK) -> Iterator[datetime]:
    """The injected clock: `count` tick times, `every` apart."""
    return (start + every * i for i in range(count))


@dataclass
class Deployment:
    """A deployment fed traffic tick by tick; decisions apply at once, as the control plane does."""

    adaptive: AdaptiveSettings = field(default_factory=lambda: AdaptiveSettings(enabled=True))
    allocations: int = 1
    config: AutoscaleSettings = field(default_factory=AutoscaleSettings)
    state: ScalerState = field(default_factory=ScalerState)
    node: Counters = field(default_factory=Counters)
    history: list[int] = field(default_factory=list)
    results: list[AutoscaleResult] = field(default_factory=list)

    def tick(
        self,
        now: datetime,
        successes: int = 0,
        seconds_each: float = 0.1,
        failures: int = 0,
        pending: int | None = None,
        route_starting: bool = False,
        started: bool = True,
    ) -> AutoscaleResult:
        self.node = Counters(
            successes=self.node.successes + successes,
            failures=self.node.failures + failures,
            pending=self.node.pending if pending is None else pending,
            inference_time_ms=self.node.inference_time_ms + successes * seconds_each * 1000,
        )
        return self.observe(now, StatsReading(now, {"node-1": self.node}), route_starting, started)

    def observe(
        self, now: datetime, reading: StatsReading | None, route_starting: bool = False, started: bool = True
    ) -> AutoscaleResult:
        ctx = AutoscaleContext(
            now=now,
            settings=self.adaptive,
            current_allocations=self.allocations,
            started=started,
            state=self.state,
            reading=reading,
            route_starting=route_starting,
        )
        result = decide_allocations(ctx, self.config)
        self.state = result.state
        if result.decision.new_allocations is not None:
            self.allocations = result.decision.new_allocations
        self.history.append(self.allocations)
        self.results.append(result)
        return result

    def run(
        self, times: Sequence[datetime] | Iterator[datetime], rate: float, seconds_each: float = 0.1
    ) -> None:
        for now in times:
            self.tick(now, successes=round(rate * TICK.total_seconds()), seconds_each=seconds_each)


def changes(history: Sequence[int]) -> list[tuple[int, int]]:
    return [(a, b) for a, b in itertools.pairwise(history) if a != b]


# ---------------------------------------------------------------- scaling up and down


def test_scales_up_under_sustained_load() -> None:
    dep = Deployment()
    dep.run(clock(60), rate=40, seconds_each=0.1)  # 4 allocations kept busy
    assert dep.allocations == 5  # 4 busy allocations are 80% of 5: below 0.9, above 0.85 of 4
    assert max(dep.history) == 5
    first_up = next(r for r in dep.results if r.decision.new_allocations is not None)
    assert first_up.decision.reason.endswith("scaling from 1 to 5 allocations")
    assert first_up.decision.load_lower is not None and first_up.decision.load_lower > 0.9 * 4


def test_a_growing_queue_and_rejections_count_as_demand() -> None:
    queued = Deployment()
    times = list(clock(8))
    for i, now in enumerate(times):  # 1 success per second, but the queue grows by 20 per second
        queued.tick(now, successes=10, seconds_each=0.1, pending=200 * i)
    assert queued.allocations > 1
    rejected = Deployment()
    for now in times:  # 10 successes per tick and 400 rejections (queue full)
        rejected.tick(now, successes=10, seconds_each=0.1, failures=400)
    assert rejected.allocations > 1
    calm = Deployment()
    for now in times:
        calm.tick(now, successes=10, seconds_each=0.1)
    assert calm.allocations == 1


def test_scales_down_after_load_drops_respecting_the_cooldown() -> None:
    dep = Deployment()
    times = list(clock(200))
    dep.run(times[:6], rate=40)
    assert dep.allocations == 5
    scaled_up_at = times[1]  # the first tick with two readings
    assert dep.state.last_scale_up_at == scaled_up_at
    dep.run(times[6:], rate=5)  # 0.5 allocation busy
    first_down = next(i for i, (a, b) in enumerate(itertools.pairwise(dep.history)) if b < a)
    down_at = times[first_down + 1]
    assert down_at >= scaled_up_at + dep.config.scale_up_cooldown
    assert down_at - (scaled_up_at + dep.config.scale_up_cooldown) <= TICK
    held = [r.decision.reason for r in dep.results[6 : first_down + 1]]
    assert held and all("cooldown" in reason for reason in held)
    assert dep.allocations == 1
    assert changes(dep.history) == [(1, 5), (5, 1)]


def test_configurable_cooldown_and_route_starting_hold_scale_down() -> None:
    dep = Deployment(config=AutoscaleSettings(scale_up_cooldown=timedelta(0)))
    times = list(clock(40))
    dep.run(times[:6], rate=40)
    assert dep.allocations == 5
    for now in times[6:20]:
        result = dep.tick(now, successes=50, route_starting=True)
        assert result.decision.new_allocations is None
        assert "a route is still starting" in result.decision.reason
    assert dep.allocations == 5
    dep.tick(times[20], successes=50)
    assert dep.allocations == 1  # no cooldown configured: down as soon as no route is starting


@pytest.mark.parametrize("busy", [0.85, 0.9, 1.7, 1.8, 2.55, 2.7, 3.6])
def test_no_flapping_on_a_steady_load_at_a_threshold(busy: float) -> None:
    rng = random.Random(busy)
    for seconds_each, noisy in ((0.1, False), (0.05, True), (0.2, True)):
        dep = Deployment()
        per_tick = busy / seconds_each * TICK.total_seconds()
        for now in clock(500):
            jitter = rng.gauss(0, per_tick**0.5) if noisy else 0.0  # Poisson-like counts
            dep.tick(now, successes=max(0, round(per_tick + jitter)), seconds_each=seconds_each)
        moves = changes(dep.history)
        # Never back down (no flapping); at most one late step up as the estimate converges onto
        # a load that sits exactly on the threshold.
        assert all(b > a for a, b in moves), moves
        assert len(moves) <= (2 if noisy else 1), moves


def test_scale_to_zero_after_the_idle_time() -> None:
    for minimum in (None, 0):
        dep = Deployment(adaptive=AdaptiveSettings(True, min_number_of_allocations=minimum))
        times = list(clock(200))
        dep.run(times[:10], rate=1)
        last_request = times[9]
        for now in times[10:]:
            dep.tick(now)
            idle = now - last_request
            if idle <= dep.config.scale_to_zero_after:
                assert dep.allocations == 1, idle
            else:
                assert dep.allocations == 0, idle
        assert dep.allocations == 0
        down = next(r for r in dep.results if r.decision.new_allocations == 0)
        assert down.decision.reason.startswith("no requests for 0:15:10")
    fast = Deployment(config=AutoscaleSettings(scale_to_zero_after=timedelta(minutes=1)))
    fast.run(clock(3), rate=1)
    for now in clock(10, start=START + 3 * TICK):
        fast.tick(now)
    assert fast.allocations == 0


def test_no_scale_to_zero_when_min_is_at_least_one() -> None:
    dep = Deployment(adaptive=AdaptiveSettings(True, min_number_of_allocations=1))
    times = list(clock(600))
    dep.run(times[:10], rate=1)
    for now in times[10:]:
        dep.tick(now)
    assert set(dep.history) == {1}
    pending_only = Deployment()
    for now in clock(200):  # requests stuck in the queue are activity too
        pending_only.tick(now, pending=3)
    assert 0 not in pending_only.history


def test_scale_from_zero_and_the_idle_timer_reset() -> None:
    dep = Deployment(adaptive=AdaptiveSettings(True, min_number_of_allocations=0))
    times = list(clock(400))
    dep.run(times[:2], rate=1)
    for now in times[2:100]:
        dep.tick(now)
    assert dep.allocations == 0
    woken_at = times[100] + timedelta(seconds=3)
    result = scale_from_zero(woken_at, dep.adaptive, dep.allocations, dep.state)
    assert result.decision.new_allocations == 1
    assert result.state.last_request_at == woken_at
    dep.state, dep.allocations = result.state, 1
    for now in times[101:200]:  # no further request: the timer counts from the wake-up
        dep.tick(now)
        assert dep.allocations == (1 if now - woken_at <= dep.config.scale_to_zero_after else 0)
    assert dep.allocations == 0
    # max(1, min) allocations; nothing to do when not at zero or not adaptive.
    assert (
        scale_from_zero(
            START, AdaptiveSettings(True, min_number_of_allocations=3), 0, ScalerState()
        ).decision.new_allocations
        == 3
    )
    busy = scale_from_zero(START, AdaptiveSettings(enabled=True), 2, ScalerState())
    assert busy.decision.new_allocations is None and busy.state == ScalerState()
    off = scale_from_zero(START, AdaptiveSettings(enabled=False), 0, ScalerState())
    assert off.decision.new_allocations is None


def test_min_and_max_are_honoured() -> None:
    capped = Deployment(adaptive=AdaptiveSettings(True, max_number_of_allocations=3))
    capped.run(clock(30), rate=100)
    assert capped.allocations == 3
    unbounded = Deployment()
    unbounded.run(clock(30), rate=1000)
    assert unbounded.allocations == 32  # the safeguard when max is unset
    floor = Deployment(adaptive=AdaptiveSettings(True, min_number_of_allocations=2), allocations=2)
    floor.run(clock(200), rate=0.1)
    assert set(floor.history) == {2}
    # Settings changed under a running deployment: brought inside at once, cooldown or not.
    raised = Deployment(adaptive=AdaptiveSettings(True, min_number_of_allocations=4), allocations=2)
    raised.tick(START)
    assert raised.allocations == 4
    lowered = Deployment()
    lowered.run(clock(5), rate=100)
    assert lowered.allocations >= 11  # 10 allocations kept busy
    lowered.adaptive = AdaptiveSettings(True, max_number_of_allocations=2)
    result = lowered.tick(START + 5 * TICK, successes=1000)
    assert result.decision.new_allocations == 2


def test_low_priority_never_goes_above_one() -> None:
    state = ScalerState()
    node = Counters()
    allocations = 1
    for i, now in enumerate(clock(20)):
        node = Counters(node.successes + 1000, 0, 0, node.inference_time_ms + 1000 * 100.0)
        ctx = AutoscaleContext(
            now, AdaptiveSettings(enabled=True), allocations, True, state, StatsReading(now, {"n": node})
        )
        result = decide_allocations(replace(ctx, low_priority=True))
        state = result.state
        assert result.decision.new_allocations in (None, 1), i


def test_counter_reset_is_a_fresh_start_never_a_negative_rate() -> None:
    dep = Deployment()
    times = list(clock(40))
    dep.run(times[:20], rate=8, seconds_each=0.1)  # 0.8 busy: stays at 1
    assert dep.allocations == 1
    before = dep.state.rate
    assert before is not None
    dep.node = Counters()  # the node restarted; 80 requests since then
    dep.tick(times[20], successes=80, seconds_each=0.1)
    after = dep.state.rate
    assert after is not None and after.value == pytest.approx(before.value, rel=0.05)
    assert dep.allocations == 1
    reading_before = StatsReading(
        times[0], {"a": Counters(1000, 5, 3, 9000.0), "b": Counters(500, 0, 0, 100.0)}
    )
    # Node a restarted, node b is gone, node c is new.
    reading_after = StatsReading(times[1], {"a": Counters(20, 1, 2, 300.0), "c": Counters(7, 0, 4, 70.0)})
    activity = activity_between(reading_before, reading_after)
    assert (activity.successes, activity.failures, activity.queue_growth, activity.pending) == (27, 1, 6, 6)
    assert activity.inference_time_ms == 370.0
    assert activity.seconds == 10.0


def test_readings_from_node_stats() -> None:
    stats = {
        "node-1": InferenceStats(
            inference_count=10,
            error_count=1,
            timeout_count=2,
            rejected_execution_count=3,
            number_of_pending_requests=4,
            total_inference_time_ms_excluding_cache_hits=55.5,
            total_inference_time_ms=99.0,
        )
    }
    reading = StatsReading.from_node_stats(START, stats)
    assert reading.nodes == {"node-1": Counters(10, 6, 4, 55.5)}


def test_losing_a_node_is_not_a_spike() -> None:
    dep = Deployment(allocations=2)
    counts = {"a": Counters(), "b": Counters()}
    times = list(clock(30))
    for now in times[:20]:
        counts = {
            k: Counters(c.successes + 80, 0, 0, c.inference_time_ms + 8000.0) for k, c in counts.items()
        }
        dep.observe(now, StatsReading(now, counts))
    assert dep.allocations == 2  # 1.6 busy on 2 allocations
    rate = dep.state.rate
    counts = {"a": Counters(counts["a"].successes + 160, 0, 0, counts["a"].inference_time_ms + 16000.0)}
    dep.observe(times[20], StatsReading(times[20], counts))  # b left; a took its share
    assert dep.state.rate is not None and rate is not None
    assert dep.state.rate.value == pytest.approx(rate.value, rel=0.05)
    assert dep.allocations == 2


# ---------------------------------------------------------------- edges


def test_not_started_or_disabled_never_changes_anything() -> None:
    dep = Deployment(adaptive=AdaptiveSettings(True, min_number_of_allocations=3), allocations=1)
    for now in clock(5):
        result = dep.tick(now, successes=5000, started=False)
        assert result.decision.new_allocations is None
        assert result.decision.reason == "the deployment is not started"
    assert dep.state.rate is None
    for settings_off in (AdaptiveSettings(enabled=False), AdaptiveSettings()):  # not given = off
        off = Deployment(adaptive=settings_off)
        off.run(clock(10), rate=1000)
        assert set(off.history) == {1}
        assert off.state == ScalerState()


def test_first_tick_waits_for_a_second_reading_and_stale_readings_are_ignored() -> None:
    dep = Deployment()
    first = dep.tick(START, successes=1000)
    assert first.decision.new_allocations is None
    assert first.decision.reason == "no load estimate yet; keeping 1 allocation"
    stale = StatsReading(START - TICK, {"node-1": Counters(5, 0, 0, 1.0)})
    dep.observe(START + TICK, stale)
    assert dep.state.last_reading is not None and dep.state.last_reading.read_at == START
    assert dep.state.rate is None
    assert dep.observe(START + TICK, None).decision.new_allocations is None


def test_state_round_trips_through_json() -> None:
    dep = Deployment()
    dep.run(clock(12), rate=30, seconds_each=0.2)
    text = json.dumps(dep.state.to_dict(), allow_nan=False)
    restored = ScalerState.from_dict(json.loads(text))
    assert restored == dep.state
    assert ScalerState.from_dict(ScalerState().to_dict()) == ScalerState()
    twin = replace(dep, state=restored, history=[], results=[])
    now = START + 12 * TICK
    assert twin.tick(now, successes=10) == dep.tick(now, successes=10)


def test_kalman_filter_catches_up_on_a_jump_in_either_direction() -> None:
    estimate: KalmanEstimate | None = None
    for _ in range(50):
        estimate = kalman_update(estimate, 50.0, 1.0, smoothing_factor=100, change_sigmas=10)
    assert estimate is not None
    jumped = kalman_update(estimate, 100.0, 1.0, smoothing_factor=100, change_sigmas=10)
    assert jumped.value > 99 and jumped.changed_last_time
    dropped = kalman_update(estimate, 0.0, 1.0, smoothing_factor=100, change_sigmas=10)
    assert dropped.value < 0.1 and dropped.changed_last_time
    small = kalman_update(estimate, 51.0, 1.0, smoothing_factor=100, change_sigmas=10)
    assert 50 < small.value < 50.5 and not small.changed_last_time
    undetected = kalman_update(estimate, 100.0, 1.0, smoothing_factor=100, change_sigmas=None)
    assert undetected.value < 60 and not undetected.changed_last_time
    zero = kalman_update(KalmanEstimate(0.0, 0.0, False), 0.0, 0.0, smoothing_factor=100, change_sigmas=None)
    assert zero == KalmanEstimate(0.0, 0.0, False)


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValidationFailed):
        AutoscaleSettings(scale_up_threshold=0.8, scale_down_threshold=0.85)
    with pytest.raises(ValidationFailed):
        AutoscaleSettings(scale_to_zero_after=timedelta(seconds=-1))
    with pytest.raises(ValidationFailed):
        AutoscaleSettings(max_allocations_cap=0)
    with pytest.raises(ValidationFailed):
        decide_allocations(AutoscaleContext(START, AdaptiveSettings(enabled=True), -1, True, ScalerState()))


# ---------------------------------------------------------------- properties


adaptive_settings = st.builds(
    lambda lo, span: AdaptiveSettings(
        min_number_of_allocations=lo,
        max_number_of_allocations=None if span is None else max(1, lo or 0) + span,
    ),
    st.sampled_from([None, 0, 0, 1, 2, 4]),
    st.sampled_from([None, 0, 1, 3, 8]),
)
tick_traffic = st.tuples(
    st.integers(min_value=0, max_value=3000),  # successes
    st.integers(min_value=0, max_value=50),  # failures
    st.integers(min_value=0, max_value=100),  # pending
    st.floats(min_value=0.001, max_value=2.0),  # seconds per inference
    st.integers(min_value=1, max_value=400),  # seconds to the next tick
)


def replay(
    adaptive: AdaptiveSettings,
    allocations: int,
    traffic: Sequence[tuple[int, int, int, float, int]],
    starting: bool,
) -> tuple[Deployment, datetime]:
    dep = Deployment(adaptive=adaptive, allocations=allocations)
    now = START
    for successes, failures, pending, seconds_each, gap in traffic:
        now += timedelta(seconds=gap)
        dep.tick(now, successes, seconds_each, failures, pending, route_starting=starting)
    return dep, now


@PROPS
@given(
    adaptive=adaptive_settings,
    allocations=st.integers(min_value=0, max_value=40),
    traffic=st.lists(tick_traffic, min_size=1, max_size=30),
    starting=st.booleans(),
)
def test_decisions_stay_within_min_and_max(
    adaptive: AdaptiveSettings,
    allocations: int,
    traffic: list[tuple[int, int, int, float, int]],
    starting: bool,
) -> None:
    dep, _ = replay(adaptive, allocations, traffic, starting)
    highest = adaptive.max_number_of_allocations or 32
    lowest = max(1, adaptive.min_number_of_allocations or 0)
    for result in dep.results:
        n = result.decision.new_allocations
        if n is not None:
            assert (n == 0 and adaptive.may_scale_to_zero) or lowest <= n <= highest, (n, adaptive)
    assert json.loads(json.dumps(dep.state.to_dict(), allow_nan=False)) == dep.state.to_dict()


@PROPS
@given(
    adaptive=adaptive_settings,
    allocations=st.integers(min_value=0, max_value=40),
    traffic=st.lists(tick_traffic, min_size=1, max_size=20),
)
def test_never_changes_when_not_started(
    adaptive: AdaptiveSettings, allocations: int, traffic: list[tuple[int, int, int, float, int]]
) -> None:
    dep = Deployment(adaptive=adaptive, allocations=allocations)
    now = START
    for successes, failures, pending, seconds_each, gap in traffic:
        now += timedelta(seconds=gap)
        result = dep.tick(now, successes, seconds_each, failures, pending, started=False)
        assert result.decision.new_allocations is None
    assert dep.state.rate is None and dep.state.inference_time is None


@PROPS
@given(
    adaptive=adaptive_settings,
    allocations=st.integers(min_value=0, max_value=12),
    history=st.lists(tick_traffic, min_size=0, max_size=15),
    base=tick_traffic,
    extra_failures=st.integers(min_value=0, max_value=3000),
    extra_pending=st.integers(min_value=0, max_value=300),
    slower=st.floats(min_value=1.0, max_value=5.0),
    starting=st.booleans(),
)
def test_more_load_never_yields_fewer_allocations(
    adaptive: AdaptiveSettings,
    allocations: int,
    history: list[tuple[int, int, int, float, int]],
    base: tuple[int, int, int, float, int],
    extra_failures: int,
    extra_pending: int,
    slower: float,
    starting: bool,
) -> None:
    """More load = more requests (refused or queued) or slower inferences, from the same state.

    The number of *completed* inferences is kept equal: it also sets how certain the inference-time
    estimate is (variance T^2/count), and a more certain estimate may rightly narrow the load band.
    """
    dep, now = replay(adaptive, allocations, history, starting=False)
    successes, failures, pending, seconds_each, gap = base
    less, more = replace(dep, results=[], history=[]), replace(dep, results=[], history=[])
    at = now + timedelta(seconds=gap)
    less.tick(at, successes, seconds_each, failures, pending, route_starting=starting)
    more.tick(
        at,
        successes,
        seconds_each * slower,
        failures + extra_failures,
        pending + extra_pending,
        route_starting=starting,
    )
    assert more.allocations >= less.allocations
