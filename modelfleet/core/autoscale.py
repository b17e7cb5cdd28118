"""Adaptive allocations: how many allocations a deployment needs for its load (after Elasticsearch).

Elasticsearch's `AdaptiveAllocationsScaler` reimplemented as one pure function per tick: state in,
decision and state out, the current time passed in. The control plane calls `decide_allocations`
every tick (ES: every 10 s) with the latest inference counters of each node, stores the returned
`ScalerState` (`to_dict()` is plain JSON) and applies the decision; `scale_from_zero` is called by
the data plane's "no route" path.

How it decides:

* Demand. Between two readings each node's counters are differenced (a counter that went down
  means the node's process restarted: its counters count from zero again, never a negative rate).
  The request rate is r = (successes + failures + queue growth) / dt, so rejected requests and a
  growing queue count as demand; the inference time T is the allocation time per success
  (`total_inference_time_ms_excluding_cache_hits` / successes: cache hits cost no allocation).
* Estimation. Two 1-D Kalman filters smooth r and T. The process variance is a hundredth of the
  measurement variance (about the last 100 ticks, ~15 min, count). Measurement variances: Poisson
  for r, max(1, r_hat*dt)/dt^2; T_hat^2/count for T. A jump of r by more than 10 sigma, or (for T) a
  change of the allocation count, injects extra process variance for two ticks so the estimate
  catches up at once instead of over 15 minutes.
* Decision. The load r*T is the number of allocations kept busy. Scale up while the lower bound
  (r-sr)(T-sT)/n > 0.9; scale down while n > 1 and the upper bound (r+sr)(T+sT)/(n-1) < 0.85. The gap
  between the two thresholds and the one-sigma bounds keep a steady load at a threshold from
  flapping. Then clamp to [min, max] (max unset: 32). No scale-down within `scale_up_cooldown` of a
  scale-up nor while a route is starting; no change unless the deployment is started.
* Zero. With min 0/unset and no request for `scale_to_zero_after`, the deployment goes to 0; the
  first request then calls `scale_from_zero` (max(1, min) allocations, idle timer reset).

Deliberate differences from Elasticsearch, each for a reason:
* counters are differenced per node and a decrease is a restart (ES clamps it to 0), so losing a
  node or restarting one is neither a false spike nor lost traffic;
* the catch-up process variance is max(measurement^2, innovation^2) rather than measurement^2, so a
  sudden drop to zero catches up as fast as a jump up does;
* a pending queue also counts as activity for the idle timer: never scale to zero with requests
  queued;
* allocations outside [min, max] (the settings changed) are brought inside at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from modelfleet.core.errors import ValidationFailed
from modelfleet.core.ml_params import AdaptiveSettings as AdaptiveSettings  # re-exported: the input type


@dataclass(frozen=True)
class AutoscaleSettings:
    """Tuning of the policy. The defaults are Elasticsearch's, except `scale_to_zero_after`.

    `scale_to_zero_after` is 15 minutes: Elasticsearch's first (hard-coded) value, and the horizon the
    estimators remember (100 ticks of 10 s). A 15-minute pause is a strong sign that traffic stopped,
    not that it paused between two bursts, and a reload costs only seconds here, while an idle
    allocation holds a processor and a model copy in memory all that time. Later ES releases default
    to 24 h because cloud ML nodes take minutes to provision; set it higher where a cold start is
    that expensive.
    """

    scale_up_threshold: float = 0.9
    scale_down_threshold: float = 0.85
    smoothing_factor: float = 100.0  # process variance = measurement variance / smoothing_factor
    dynamics_change_sigmas: float = 10.0  # a rate jump beyond this many sigma is a change of regime
    scale_up_cooldown: timedelta = timedelta(minutes=5)
    scale_to_zero_after: timedelta = timedelta(minutes=15)
    max_allocations_cap: int = 32  # the upper bound when max_number_of_allocations is unset
    default_inference_time_seconds: float = 1.0  # until a first inference time is measured

    def __post_init__(self) -> None:
        if not 0 < self.scale_down_threshold < self.scale_up_threshold:
            raise ValidationFailed("thresholds must satisfy 0 < scale_down < scale_up", "thresholds")
        if self.smoothing_factor <= 0 or self.dynamics_change_sigmas <= 0:
            raise ValidationFailed("smoothing_factor and dynamics_change_sigmas must be > 0", "filter")
        if self.scale_up_cooldown < timedelta(0) or self.scale_to_zero_after < timedelta(0):
            raise ValidationFailed("cooldown and scale-to-zero delays must be >= 0", "delays")
        if self.max_allocations_cap < 1 or self.default_inference_time_seconds <= 0:
            raise ValidationFailed("max_allocations_cap and default inference time must be > 0", "cap")


# ---------------------------------------------------------------- stats readings


class NodeInferenceStats(Protocol):
    """What a node reports per deployment (`schemas.stats.InferenceStats` has these fields)."""

    @property
    def inference_count(self) -> int: ...
    @property
    def error_count(self) -> int: ...
    @property
    def timeout_count(self) -> int: ...
    @property
    def rejected_execution_count(self) -> int: ...
    @property
    def number_of_pending_requests(self) -> int: ...
    @property
    def total_inference_time_ms_excluding_cache_hits(self) -> float: ...


@dataclass(frozen=True)
class Counters:
    """One node's counters for one deployment: cumulative since its process started, except `pending`."""

    successes: int = 0  # inference_count
    failures: int = 0  # error_count + timeout_count + rejected_execution_count
    pending: int = 0  # number_of_pending_requests: queued + running now (a gauge)
    inference_time_ms: float = 0.0  # total_inference_time_ms_excluding_cache_hits

    @classmethod
    def of(cls, stats: NodeInferenceStats) -> Counters:
        return cls(
            successes=stats.inference_count,
            failures=stats.error_count + stats.timeout_count + stats.rejected_execution_count,
            pending=stats.number_of_pending_requests,
            inference_time_ms=float(stats.total_inference_time_ms_excluding_cache_hits),
        )

    def restarted_since(self, before: Counters) -> bool:
        """A cumulative counter went down: the node's process started again from zero."""
        return (
            self.successes < before.successes
            or self.failures < before.failures
            or self.inference_time_ms < before.inference_time_ms
        )


@dataclass(frozen=True)
class StatsReading:
    """The counters of every node serving the deployment, read at `read_at`."""

    read_at: datetime
    nodes: Mapping[str, Counters] = field(default_factory=dict)  # node_id -> counters

    @classmethod
    def from_node_stats(cls, read_at: datetime, stats: Mapping[str, NodeInferenceStats]) -> StatsReading:
        return cls(read_at, {node_id: Counters.of(s) for node_id, s in stats.items()})


@dataclass(frozen=True)
class Activity:
    """What happened between two readings, summed over nodes."""

    seconds: float
    successes: int
    failures: int
    queue_growth: int
    pending: int  # queue size now
    inference_time_ms: float

    @property
    def requests(self) -> int:
        return self.successes + self.failures + self.queue_growth


def activity_between(before: StatsReading, after: StatsReading) -> Activity:
    """Per-node differences, summed. A new or restarted node counts from zero; a gone node adds nothing."""
    zero = Counters()
    successes = failures = growth = pending = 0
    time_ms = 0.0
    for node_id, now in after.nodes.items():
        then = before.nodes.get(node_id, zero)
        if now.restarted_since(then):
            then = zero
        successes += now.successes - then.successes
        failures += now.failures - then.failures
        time_ms += now.inference_time_ms - then.inference_time_ms
        growth += max(0, now.pending - then.pending)
        pending += now.pending
    seconds = (after.read_at - before.read_at).total_seconds()
    return Activity(seconds, successes, failures, growth, pending, time_ms)


# ---------------------------------------------------------------- estimation


@dataclass(frozen=True)
class KalmanEstimate:
    """A smoothed quantity: its estimate, the variance of the estimate, and whether it just jumped."""

    value: float
    variance: float
    changed_last_time: bool = True

    @property
    def error(self) -> float:
        return math.sqrt(self.variance)

    @property
    def lower(self) -> float:
        return self.value - self.error

    @property
    def upper(self) -> float:
        return self.value + self.error


def kalman_update(
    prior: KalmanEstimate | None,
    measurement: float,
    variance: float,
    *,
    smoothing_factor: float,
    change_sigmas: float | None,
    external_change: bool = False,
) -> KalmanEstimate:
    """One step of a 1-D Kalman filter with a steady-state smoothing and change detection.

    `change_sigmas=None` turns the detection off (the change is then only signalled externally). After
    a change, this step and the next get extra process variance, so the estimate follows the jump.
    """
    if prior is None:
        return KalmanEstimate(measurement, variance, changed_last_time=True)
    innovation = measurement - prior.value
    spread = variance + prior.variance
    detected = (
        change_sigmas is not None and spread > 0 and innovation * innovation / spread > change_sigmas**2
    )
    changed = external_change or detected
    process = variance / smoothing_factor
    if changed or prior.changed_last_time:
        process = max(process, measurement * measurement, innovation * innovation)
    predicted = prior.variance + process
    total = predicted + variance
    gain = 1.0 if total <= 0 else predicted / total
    return KalmanEstimate(
        value=prior.value + gain * innovation,
        variance=max(0.0, (1.0 - gain) * predicted),
        changed_last_time=changed,
    )


# ---------------------------------------------------------------- state


@dataclass(frozen=True)
class ScalerState:
    """Everything the policy remembers between ticks; `to_dict()` is plain JSON for the state store."""

    rate: KalmanEstimate | None = None  # requests per second
    inference_time: KalmanEstimate | None = None  # seconds of allocation time per success
    last_reading: StatsReading | None = None
    last_request_at: datetime | None = None  # the idle timer
    last_scale_up_at: datetime | None = None  # the scale-down cooldown
    observed_allocations: int | None = None  # allocations at the last tick: a change resets T's filter

    def to_dict(self) -> dict[str, Any]:
        return {
            "rate": _estimate_dict(self.rate),
            "inference_time": _estimate_dict(self.inference_time),
            "last_reading": None if self.last_reading is None else _reading_dict(self.last_reading),
            "last_request_at": _time_str(self.last_request_at),
            "last_scale_up_at": _time_str(self.last_scale_up_at),
            "observed_allocations": self.observed_allocations,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScalerState:
        reading = data.get("last_reading")
        return cls(
            rate=_estimate_of(data.get("rate")),
            inference_time=_estimate_of(data.get("inference_time")),
            last_reading=None if reading is None else _reading_of(reading),
            last_request_at=_time_of(data.get("last_request_at")),
            last_scale_up_at=_time_of(data.get("last_scale_up_at")),
            observed_allocations=data.get("observed_allocations"),
        )


def _estimate_dict(estimate: KalmanEstimate | None) -> dict[str, Any] | None:
    if estimate is None:
        return None
    return {"value": estimate.value, "variance": estimate.variance, "changed": estimate.changed_last_time}


def _estimate_of(data: Mapping[str, Any] | None) -> KalmanEstimate | None:
    if data is None:
        return None
    return KalmanEstimate(float(data["value"]), float(data["variance"]), bool(data["changed"]))


def _reading_dict(reading: StatsReading) -> dict[str, Any]:
    return {
        "read_at": reading.read_at.isoformat(),
        "nodes": {
            node_id: {
                "successes": c.successes,
                "failures": c.failures,
                "pending": c.pending,
                "inference_time_ms": c.inference_time_ms,
            }
            for node_id, c in sorted(reading.nodes.items())
        },
    }


def _reading_of(data: Mapping[str, Any]) -> StatsReading:
    nodes = {
        node_id: Counters(
            int(c["successes"]), int(c["failures"]), int(c["pending"]), float(c["inference_time_ms"])
        )
        for node_id, c in data["nodes"].items()
    }
    return StatsReading(datetime.fromisoformat(data["read_at"]), nodes)


def _time_str(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _time_of(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


# ---------------------------------------------------------------- decision


@dataclass(frozen=True)
class AutoscaleContext:
    now: datetime
    settings: AdaptiveSettings  # off unless enabled is True
    current_allocations: int  # the deployment's number_of_allocations now
    started: bool  # no scaling unless the deployment is started
    state: ScalerState
    reading: StatsReading | None = None  # this tick's counters; None when none could be read
    route_starting: bool = False  # a route is loading: no scale-down yet
    low_priority: bool = False  # low priority never goes above 1 allocation


@dataclass(frozen=True)
class AutoscaleDecision:
    new_allocations: int | None  # None: keep the current number
    reason: str
    load_lower: float | None = None  # the load bounds the decision used (allocations), if any
    load_upper: float | None = None


@dataclass(frozen=True)
class AutoscaleResult:
    decision: AutoscaleDecision
    state: ScalerState


def allocation_bounds(
    settings: AdaptiveSettings, config: AutoscaleSettings, *, low_priority: bool = False
) -> tuple[int, int]:
    """The [lowest, highest] non-zero allocation count the policy may choose."""
    highest = settings.max_number_of_allocations
    highest = config.max_allocations_cap if highest is None or highest < 1 else highest  # -1: unset
    if low_priority:
        highest = min(highest, 1)
    lowest = max(1, settings.min_number_of_allocations or 0)
    return min(lowest, highest), highest


def _estimate(
    state: ScalerState, activity: Activity, allocations: int, cfg: AutoscaleSettings
) -> ScalerState:
    dt = activity.seconds
    rate = activity.requests / dt
    rate_basis = state.rate.value if state.rate is not None else rate
    rate_variance = max(1.0, rate_basis * dt) / (dt * dt)
    rate_estimate = kalman_update(
        state.rate,
        rate,
        rate_variance,
        smoothing_factor=cfg.smoothing_factor,
        change_sigmas=cfg.dynamics_change_sigmas,
    )
    time_estimate = state.inference_time
    if activity.successes > 0:
        seconds = max(0.0, activity.inference_time_ms) / 1000.0 / activity.successes
        time_basis = time_estimate.value if time_estimate is not None else seconds
        time_estimate = kalman_update(
            time_estimate,
            seconds,
            time_basis * time_basis / activity.successes,
            smoothing_factor=cfg.smoothing_factor,
            change_sigmas=None,
            external_change=state.observed_allocations not in (None, allocations),
        )
    return replace(state, rate=rate_estimate, inference_time=time_estimate)


def _load_bounds(state: ScalerState, cfg: AutoscaleSettings) -> tuple[float, float] | None:
    if state.rate is None:
        return None
    time = state.inference_time
    default = cfg.default_inference_time_seconds
    time_lower = max(0.0, time.lower) if time is not None else default
    time_upper = time.upper if time is not None else default
    return max(0.0, state.rate.lower) * time_lower, max(0.0, state.rate.upper) * time_upper


def _needed_allocations(current: int, load: tuple[float, float], cfg: AutoscaleSettings, ceiling: int) -> int:
    lower, upper = load
    needed = current
    # ceiling + 1 bounds the loop; anything above the ceiling is clamped to it anyway.
    while needed <= ceiling and (lower > 0 if needed == 0 else lower / needed > cfg.scale_up_threshold):
        needed += 1
    while needed > 1 and upper / (needed - 1) < cfg.scale_down_threshold:
        needed -= 1
    return needed


def decide_allocations(ctx: AutoscaleContext, config: AutoscaleSettings | None = None) -> AutoscaleResult:
    """One tick of the policy: how many allocations the deployment should have now, and the new state."""
    cfg = config or AutoscaleSettings()
    current = ctx.current_allocations
    if current < 0:
        raise ValidationFailed("current_allocations must be >= 0", "current_allocations")
    if not ctx.settings.is_enabled:
        return AutoscaleResult(AutoscaleDecision(None, "adaptive allocations are disabled"), ScalerState())
    state = ctx.state
    if state.last_request_at is None:
        state = replace(state, last_request_at=ctx.now)  # the idle timer starts with the scaler
    if not ctx.started:
        state = replace(state, last_reading=ctx.reading or state.last_reading)
        return AutoscaleResult(AutoscaleDecision(None, "the deployment is not started"), state)

    if ctx.reading is not None:
        previous = state.last_reading
        if previous is None or ctx.reading.read_at > previous.read_at:  # a stale reading is ignored
            state = replace(state, last_reading=ctx.reading)
        if previous is not None and ctx.reading.read_at > previous.read_at:
            activity = activity_between(previous, ctx.reading)
            state = _estimate(state, activity, current, cfg)
            if activity.requests > 0 or activity.pending > 0:
                state = replace(state, last_request_at=ctx.now)
    state = replace(state, observed_allocations=current)

    lowest, highest = allocation_bounds(ctx.settings, cfg, low_priority=ctx.low_priority)
    load = _load_bounds(state, cfg)
    target = current if load is None else _needed_allocations(current, load, cfg, highest)
    if target > 0 or not ctx.settings.may_scale_to_zero:  # at 0 without demand, 0 is allowed
        target = min(max(target, lowest), highest)
    idle_for = ctx.now - (state.last_request_at or ctx.now)
    to_zero = ctx.settings.may_scale_to_zero and idle_for > cfg.scale_to_zero_after
    if to_zero:
        target = 0

    lower, upper = load if load is not None else (None, None)
    load_text = "no load estimate yet" if load is None else f"load in [{load[0]:.3f}, {load[1]:.3f}]"
    if target < current:
        in_bounds = min(current, highest)  # settings lowered the max: always honoured at once
        hold = None
        last_up = state.last_scale_up_at
        if last_up is not None and ctx.now < last_up + cfg.scale_up_cooldown:
            hold = f"scaled up at {last_up.isoformat()}, within the {cfg.scale_up_cooldown} cooldown"
        elif ctx.route_starting:
            hold = "a route is still starting"
        if hold is not None and target < in_bounds:
            if in_bounds == current:
                reason = f"{load_text}; not scaling down from {current}: {hold}"
                return AutoscaleResult(AutoscaleDecision(None, reason, lower, upper), state)
            target = in_bounds
    if target == current:
        reason = f"{load_text}; keeping {current} allocation{'s' if current != 1 else ''}"
        return AutoscaleResult(AutoscaleDecision(None, reason, lower, upper), state)
    if target > current:
        state = replace(state, last_scale_up_at=ctx.now)
    idle = f"no requests for {idle_for}, more than {cfg.scale_to_zero_after}"
    why = idle if target == 0 else load_text
    reason = f"{why}; scaling from {current} to {target} allocations"
    return AutoscaleResult(AutoscaleDecision(target, reason, lower, upper), state)


def scale_from_zero(
    now: datetime,
    settings: AdaptiveSettings,
    current_allocations: int,
    state: ScalerState,
    config: AutoscaleSettings | None = None,
) -> AutoscaleResult:
    """A request found no route: a deployment at 0 allocations with adaptive on gets max(1, min).

    The idle timer is reset, so the new allocation is not taken away again by the next tick (ES PR
    #115400), and the start counts as a scale-up for the cooldown.
    """
    cfg = config or AutoscaleSettings()
    if not settings.is_enabled:
        return AutoscaleResult(AutoscaleDecision(None, "adaptive allocations are disabled"), state)
    if current_allocations != 0:
        reason = f"the deployment has {current_allocations} allocations, not 0"
        return AutoscaleResult(AutoscaleDecision(None, reason), state)
    lowest, _ = allocation_bounds(settings, cfg)
    state = replace(state, last_request_at=now, last_scale_up_at=now)
    reason = f"a request arrived at 0 allocations; scaling from 0 to {lowest} allocations"
    return AutoscaleResult(AutoscaleDecision(lowest, reason), state)
