"""Elasticsearch `_ml` trained-model deployment parameters: parsing, validation, hardware clamping.

The `_ml` face calls these before it touches the core, so that a client written for Elasticsearch
gets Elasticsearch's answers, word for word:

* `parse_time_value` / `parse_time_seconds` / `parse_byte_size` (from `es_units`, re-exported here)
  follow `TimeValue.parseTimeValue` and `ByteSizeValue.parseBytesSizeValue`, messages included.
* `validate_start` / `validate_update` (and `resolve_start`, which applies ES's defaults and the
  clamping to a valid request) return the messages of
  `StartTrainedModelDeploymentAction.Request.validate`, `UpdateTrainedModelDeploymentAction` and
  `AdaptiveAllocationsSettings.validate`, in ES's order; `validation_failed_message` joins them as
  `ActionRequestValidationException` does. Two project rules differ from current ES: the queue
  defaults to 1024 and may hold up to 1,000,000 requests (ES before PRs #115041/#118887), and a
  low-priority deployment may not get an adaptive maximum above 1 (ES PR #140163; the wording of that
  one message is ours, modelled on ES's other low-priority messages).
* `clamp_to_hardware` reduces (never refuses) threads and allocations the nodes cannot hold, as the
  ES documentation promises ("it will automatically be changed to a value less than ...").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from modelfleet.core.errors import ValidationFailed
from modelfleet.core.es_units import LONG_MAX as LONG_MAX  # the re-exports: the face needs one module
from modelfleet.core.es_units import MINUS_ONE as MINUS_ONE
from modelfleet.core.es_units import ByteUnit as ByteUnit
from modelfleet.core.es_units import ParamError as ParamError
from modelfleet.core.es_units import TimeUnit as TimeUnit
from modelfleet.core.es_units import TimeValue as TimeValue
from modelfleet.core.es_units import format_byte_size as format_byte_size
from modelfleet.core.es_units import parse_byte_size as parse_byte_size
from modelfleet.core.es_units import parse_time_seconds as parse_time_seconds
from modelfleet.core.es_units import parse_time_value as parse_time_value
from modelfleet.core.placement import Priority

DEFAULT_QUEUE_CAPACITY = 1024
MAX_QUEUE_CAPACITY = 1_000_000
MAX_THREADS_PER_ALLOCATION = 32
DEFAULT_START_TIMEOUT = TimeValue(30, TimeUnit.SECONDS)


def effective_cache_size(cache_size_bytes: int | None, model_bytes: int) -> int:
    """The per-node inference cache: the model's size unless set; 0 disables it."""
    return model_bytes if cache_size_bytes is None or cache_size_bytes < 0 else cache_size_bytes


# ---------------------------------------------------------------- validation


class WaitFor(StrEnum):
    STARTING = "starting"
    STARTED = "started"
    FULLY_ALLOCATED = "fully_allocated"


# The order of ES's VALID_WAIT_STATES, which its message lists.
_VALID_WAIT_STATES = (WaitFor.STARTED, WaitFor.STARTING, WaitFor.FULLY_ALLOCATED)


@dataclass(frozen=True)
class AdaptiveSettings:
    """`adaptive_allocations` as sent or stored. enabled None: not given; a bound of -1: reset (update)."""

    enabled: bool | None = None
    min_number_of_allocations: int | None = None  # None/0: may scale to zero
    max_number_of_allocations: int | None = None  # None: the autoscaler's cap (32)

    @property
    def is_enabled(self) -> bool:
        return self.enabled is True

    @property
    def may_scale_to_zero(self) -> bool:
        return self.min_number_of_allocations is None or self.min_number_of_allocations <= 0


@dataclass(frozen=True)
class StartRequest:
    """The start request's values after parsing; None = not given (ES's default applies)."""

    number_of_allocations: int | None = None
    threads_per_allocation: int | None = None  # None: 1
    queue_capacity: int | None = None  # None: 1024
    priority: str = Priority.NORMAL  # as given; case-insensitive
    timeout_seconds: float = DEFAULT_START_TIMEOUT.seconds
    wait_for: str = WaitFor.STARTED  # as given; case-insensitive
    adaptive: AdaptiveSettings | None = None

    @property
    def threads(self) -> int:
        return 1 if self.threads_per_allocation is None else self.threads_per_allocation

    @property
    def queue(self) -> int:
        return DEFAULT_QUEUE_CAPACITY if self.queue_capacity is None else self.queue_capacity


@dataclass(frozen=True)
class ResolvedStart:
    """A valid start request with ES's defaults applied and clamped to the nodes' hardware."""

    number_of_allocations: int
    threads_per_allocation: int
    queue_capacity: int
    priority: Priority
    wait_for: WaitFor
    notes: tuple[str, ...] = ()  # what clamping changed


def parse_wait_for(value: str) -> WaitFor | None:
    """The wait_for state, case-insensitive as ES's `State.fromString`; None when unknown."""
    try:
        return WaitFor(value.lower())
    except ValueError:
        return None


def parse_priority(value: str) -> Priority | None:
    """The priority, case-insensitive as ES's `Priority.fromString`; None when unknown."""
    try:
        return Priority(value.lower())
    except ValueError:
        return None


def validation_failed_message(errors: Sequence[str]) -> str:
    """`ActionRequestValidationException.getMessage()`: "Validation Failed: 1: a;2: b;"."""
    return "Validation Failed: " + "".join(f"{i}: {error};" for i, error in enumerate(errors, 1))


def validate_adaptive(settings: AdaptiveSettings) -> list[str]:
    """`AdaptiveAllocationsSettings.validate` (-1 means "unset" and passes)."""
    errors = []
    low, high = settings.min_number_of_allocations, settings.max_number_of_allocations
    has_low, has_high = low is not None and low != -1, high is not None and high != -1
    if has_low and low is not None and low < 0:
        errors.append("[min_number_of_allocations] must be a non-negative integer or null")
    if has_high and high is not None and high < 1:
        errors.append("[max_number_of_allocations] must be a positive integer or null")
    if has_low and has_high and low is not None and high is not None and low > high:
        errors.append("[min_number_of_allocations] must not be larger than [max_number_of_allocations]")
    return errors


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


def _low_priority_errors(number_of_allocations: int | None, adaptive: AdaptiveSettings | None) -> list[str]:
    errors = []
    if number_of_allocations is not None and number_of_allocations > 1:
        errors.append("[number_of_allocations] must be 1 when [priority] is low")
    if adaptive is not None and (adaptive.max_number_of_allocations or 0) > 1:
        errors.append("[max_number_of_allocations] must be 1 when [priority] is low")
    return errors


def validate_start(request: StartRequest) -> list[str]:
    """Every message ES's start validation gives for `request`, in ES's order (empty = valid)."""
    errors = []
    if parse_wait_for(request.wait_for) is None:
        # ES's text, down to its missing closing bracket.
        valid = ",".join(_VALID_WAIT_STATES)
        errors.append(f"invalid [wait_for] state [{request.wait_for}]; must be one of [{valid}")
    priority = parse_priority(request.priority)
    if priority is None:
        # What ES's Priority.fromString throws for an unknown value.
        errors.append(
            "No enum constant org.elasticsearch.xpack.core.ml.inference.assignment.Priority."
            + request.priority.upper()
        )
    adaptive = request.adaptive
    number = request.number_of_allocations
    if number is not None:
        if number < 1:
            errors.append("[number_of_allocations] must be a positive integer")
        if adaptive is not None and adaptive.is_enabled:
            errors.append("[number_of_allocations] cannot be set if adaptive allocations is enabled")
    threads = request.threads
    if threads < 1:
        errors.append("[threads_per_allocation] must be a positive integer")
    if adaptive is not None:
        errors.extend(validate_adaptive(adaptive))
    if threads > MAX_THREADS_PER_ALLOCATION or not _is_power_of_two(threads):
        limit = MAX_THREADS_PER_ALLOCATION
        errors.append(f"[threads_per_allocation] must be a power of 2 less than or equal to {limit}")
    if request.queue < 1:
        errors.append("[queue_capacity] must be a positive integer")
    if request.queue > MAX_QUEUE_CAPACITY:
        errors.append(f"[queue_capacity] must be less than {MAX_QUEUE_CAPACITY}")
    if request.timeout_seconds * 1e9 < 1:
        errors.append("[timeout] must be positive")
    if priority is Priority.LOW:
        errors.extend(_low_priority_errors(number, adaptive))
        if threads > 1:
            errors.append("[threads_per_allocation] must be 1 when [priority] is low")
    return errors


def start_number_of_allocations(request: StartRequest) -> int:
    """ES's `computeNumberOfAllocations`: the given number, else max(1, adaptive min)."""
    if request.number_of_allocations is not None:
        return request.number_of_allocations
    minimum = None if request.adaptive is None else request.adaptive.min_number_of_allocations
    return minimum if minimum is not None and minimum > 0 else 1


def resolve_start(request: StartRequest, node_processors: Sequence[int]) -> ResolvedStart:
    """ES's defaults applied to a valid request, then `clamp_to_hardware`.

    Raises `ValidationFailed` (the ES-joined message) when `validate_start` finds problems.
    """
    errors = validate_start(request)
    wait_for, priority = parse_wait_for(request.wait_for), parse_priority(request.priority)
    if errors or wait_for is None or priority is None:
        raise ValidationFailed(validation_failed_message(errors), "start")
    fit = clamp_to_hardware(start_number_of_allocations(request), request.threads, node_processors)
    return ResolvedStart(
        number_of_allocations=fit.number_of_allocations,
        threads_per_allocation=fit.threads_per_allocation,
        queue_capacity=request.queue,
        priority=priority,
        wait_for=wait_for,
        notes=fit.notes,
    )


def merge_adaptive(
    existing: AdaptiveSettings | None, update: AdaptiveSettings | None
) -> AdaptiveSettings | None:
    """The settings after an update: given fields replace, -1 clears a bound, absent ones stay."""
    if update is None:
        return existing
    base = existing or AdaptiveSettings()

    def bound(new: int | None, old: int | None) -> int | None:
        if new is None:
            return None if old == -1 else old
        return None if new == -1 else new

    return AdaptiveSettings(
        enabled=base.enabled if update.enabled is None else update.enabled,
        min_number_of_allocations=bound(update.min_number_of_allocations, base.min_number_of_allocations),
        max_number_of_allocations=bound(update.max_number_of_allocations, base.max_number_of_allocations),
    )


def validate_update(
    number_of_allocations: int | None,
    adaptive: AdaptiveSettings | None,
    *,
    existing: AdaptiveSettings | None = None,
    priority: Priority = Priority.NORMAL,
) -> list[str]:
    """ES's update checks: the request alone first; if it passes, the merged adaptive settings.

    `existing` is the deployment's stored adaptive settings, `priority` its priority.
    """
    errors = []
    number = number_of_allocations
    if number is not None:
        if number < 1:
            errors.append("[number_of_allocations] must be a positive integer")
        if adaptive is not None and adaptive.is_enabled:
            errors.append("[number_of_allocations] cannot be set if adaptive allocations is enabled")
    if adaptive is not None:
        errors.extend(validate_adaptive(adaptive))
    merged = merge_adaptive(existing, adaptive)
    if not errors and merged is not None:
        if merged.is_enabled and number is not None:
            errors.append("[number_of_allocations] cannot be set if adaptive allocations is enabled")
        errors.extend(validate_adaptive(merged))
    if priority is Priority.LOW:
        errors.extend(_low_priority_errors(number, merged))
    return errors


# ---------------------------------------------------------------- hardware


@dataclass(frozen=True)
class HardwareFit:
    number_of_allocations: int
    threads_per_allocation: int
    notes: tuple[str, ...] = ()  # what was reduced and why; empty when nothing changed


def _largest_power_of_two_at_most(value: int) -> int:
    return 1 << (value.bit_length() - 1)


def clamp_to_hardware(
    number_of_allocations: int, threads_per_allocation: int, node_processors: Sequence[int]
) -> HardwareFit:
    """Reduce what the nodes cannot hold; never refuse.

    Threads above the largest node's processors become the largest power of 2 that fits it;
    allocations above what all nodes can hold (sum of processors // threads, at least 1) are reduced
    to that. With no node known nothing is changed (the planner reports what cannot be placed).
    """
    if any(processors < 1 for processors in node_processors):
        raise ValidationFailed("node processors must be >= 1", "processors")
    fit = HardwareFit(number_of_allocations, threads_per_allocation)
    if not node_processors:
        return fit
    largest = max(node_processors)
    if threads_per_allocation > largest:
        threads = _largest_power_of_two_at_most(largest)
        fit = replace(
            fit,
            threads_per_allocation=threads,
            notes=(
                *fit.notes,
                f"[threads_per_allocation] reduced from {threads_per_allocation} to {threads}: "
                f"the largest node has {largest} allocated processors",
            ),
        )
    capacity = max(1, sum(processors // fit.threads_per_allocation for processors in node_processors))
    if number_of_allocations > capacity:
        fit = replace(
            fit,
            number_of_allocations=capacity,
            notes=(
                *fit.notes,
                f"[number_of_allocations] reduced from {number_of_allocations} to {capacity}: the "
                f"{len(node_processors)} node(s) hold at most {capacity} allocation(s) of "
                f"{fit.threads_per_allocation} thread(s)",
            ),
        )
    return fit
