"""Elasticsearch start/update parameter rules: every message word for word, and the clamping."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.core.errors import ValidationFailed
from modelfleet.core.ml_params import (
    LONG_MAX,
    MINUS_ONE,
    AdaptiveSettings,
    ByteUnit,
    ParamError,
    ResolvedStart,
    StartRequest,
    TimeUnit,
    TimeValue,
    WaitFor,
    clamp_to_hardware,
    effective_cache_size,
    format_byte_size,
    merge_adaptive,
    parse_byte_size,
    parse_time_seconds,
    parse_time_value,
    resolve_start,
    start_number_of_allocations,
    validate_adaptive,
    validate_start,
    validate_update,
    validation_failed_message,
)
from modelfleet.core.placement import Priority

PROPS = settings(max_examples=200, deadline=None, database=None)
KB, MB, GB, TB, PB = (1024**i for i in range(1, 6))
NO_UNIT = "unit is missing or unrecognized"


# ---------------------------------------------------------------- byte sizes


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("100mb", 100 * MB),
        ("0b", 0),
        ("0", 0),
        ("0B", 0),
        ("1b", 1),
        ("-1", -1),
        ("-1b", -1),
        ("1gb", GB),
        ("512kb", 512 * KB),
        ("512KB", 512 * KB),
        ("1k", KB),
        ("2M", 2 * MB),
        ("3g", 3 * GB),
        ("1tb", TB),
        ("1pb", PB),
        ("1.5gb", 3 * GB // 2),
        ("1.55gb", 1664299828),  # 1.55 x 2^30 = 1664299827.2, rounded up
        ("0.5kb", 512),
        ("1e3kb", 1000 * KB),
        ("10 kb", 10 * KB),
        (" 7b ", 7),
        ("9223372036854775807b", LONG_MAX),
    ],
)
def test_byte_sizes_parse_as_elasticsearch_does(text: str, size: int) -> None:
    assert parse_byte_size(text, "cache_size") == size


def test_a_json_integer_is_a_number_of_bytes() -> None:
    assert parse_byte_size(1048576, "cache_size") == MB
    assert parse_byte_size(0, "cache_size") == 0
    with pytest.raises(ParamError) as err:
        parse_byte_size(-2, "cache_size")
    assert str(err.value) == "failed to parse setting [cache_size] with value [-2] as a size in bytes"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "abc",
            f"failed to parse setting [cache_size] with value [abc] as a size in bytes: {NO_UNIT}",
        ),
        (
            "100",
            f"failed to parse setting [cache_size] with value [100] as a size in bytes: {NO_UNIT}",
        ),
        (
            "1.5",
            f"failed to parse setting [cache_size] with value [1.5] as a size in bytes: {NO_UNIT}",
        ),
        ("-1mb", "failed to parse setting [cache_size] with value [-1mb] as a size in bytes"),
        ("-5b", "failed to parse setting [cache_size] with value [-5b] as a size in bytes"),
        ("-0.5mb", "failed to parse setting [cache_size] with value [-0.5mb]"),
        ("x.5kb", "failed to parse setting [cache_size] with value [x.5kb]"),
        ("1.5b", "failed to parse setting [cache_size] with value [1.5b]"),
        ("9223372036854775808b", "failed to parse setting [cache_size] with value [9223372036854775808b]"),
        ("9999999pb", "failed to parse setting [cache_size] with value [9999999pb] as a size in bytes"),
        ("1.555gb", "failed to parse setting [cache_size] with more than two decimals in value [1.555gb]"),
        (
            "1.5e20pb",
            "failed to parse setting [cache_size] with value beyond 9223372036854775807: [1.5e20pb]",
        ),
    ],
)
def test_bad_byte_sizes_get_elasticsearch_messages(text: str, message: str) -> None:
    with pytest.raises(ParamError) as err:
        parse_byte_size(text, "cache_size")
    assert str(err.value) == message
    assert err.value.error_type == "parse_exception"
    assert err.value.field == "cache_size"


@PROPS
@given(st.integers(min_value=-1, max_value=LONG_MAX))
def test_byte_sizes_round_trip(size: int) -> None:
    text = format_byte_size(size)
    assert parse_byte_size(text, "cache_size") == size


@PROPS
@given(st.sampled_from(list(ByteUnit)), st.data())
def test_a_whole_number_of_any_unit_parses_to_its_bytes(unit: ByteUnit, data: st.DataObject) -> None:
    count = data.draw(st.integers(min_value=0, max_value=LONG_MAX // unit.size))
    for text in (f"{count}{unit}", f"{count}{unit.upper()}", f" {count} {unit} "):
        assert parse_byte_size(text, "s") == count * unit.size


def test_cache_size_defaults_to_the_model_size() -> None:
    assert effective_cache_size(None, 5 * MB) == 5 * MB
    assert effective_cache_size(0, 5 * MB) == 0
    assert effective_cache_size(MB, 5 * MB) == MB


# ---------------------------------------------------------------- time values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", TimeValue(30, TimeUnit.SECONDS)),
        ("1m", TimeValue(1, TimeUnit.MINUTES)),
        ("500ms", TimeValue(500, TimeUnit.MILLIS)),
        ("500MS", TimeValue(500, TimeUnit.MILLIS)),
        ("2h", TimeValue(2, TimeUnit.HOURS)),
        ("2H", TimeValue(2, TimeUnit.HOURS)),
        ("1d", TimeValue(1, TimeUnit.DAYS)),
        ("10nanos", TimeValue(10, TimeUnit.NANOS)),
        ("3micros", TimeValue(3, TimeUnit.MICROS)),
        ("5 s", TimeValue(5, TimeUnit.SECONDS)),
        ("-1", MINUS_ONE),
        ("-001", MINUS_ONE),
        ("-1s", TimeValue(-1, TimeUnit.SECONDS)),
        ("0", TimeValue(0)),
        ("000", TimeValue(0)),
    ],
)
def test_time_values_parse_as_elasticsearch_does(text: str, expected: TimeValue) -> None:
    assert parse_time_value(text, "timeout") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "abc",
            f"failed to parse setting [timeout] with value [abc] as a time value: {NO_UNIT}",
        ),
        (
            "30",
            f"failed to parse setting [timeout] with value [30] as a time value: {NO_UNIT}",
        ),
        (
            "1M",
            f"failed to parse setting [timeout] with value [1M] as a time value: {NO_UNIT}",
        ),
        (
            "5m ",
            f"failed to parse setting [timeout] with value [5m ] as a time value: {NO_UNIT}",
        ),
        (
            "-5s",
            "failed to parse setting [timeout] with value [-5s] as a time value: "
            "negative durations are not supported",
        ),
        ("1.5s", "failed to parse [1.5s], fractional time values are not supported"),
        ("xs", "failed to parse [xs]"),
    ],
)
def test_bad_time_values_get_elasticsearch_messages(text: str, message: str) -> None:
    with pytest.raises(ParamError) as err:
        parse_time_value(text, "timeout")
    assert str(err.value) == message
    assert err.value.error_type == "illegal_argument_exception"


@PROPS
@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(list(TimeUnit)))
def test_time_values_round_trip(duration: int, unit: TimeUnit) -> None:
    value = TimeValue(duration, unit)
    parsed = parse_time_value(value.string_rep(), "timeout")
    assert parsed.nanos == value.nanos
    assert parse_time_value(MINUS_ONE.string_rep(), "timeout") == MINUS_ONE


def test_time_in_seconds() -> None:
    assert parse_time_seconds("1m", "timeout") == 60.0
    assert parse_time_seconds("250ms", "timeout") == 0.25
    assert parse_time_seconds("-1", "timeout") < 0


def test_time_value_nanos() -> None:
    assert TimeValue(30, TimeUnit.SECONDS).seconds == 30.0
    assert TimeValue(2, TimeUnit.MINUTES).nanos == 120 * 10**9
    assert TimeValue(LONG_MAX, TimeUnit.DAYS).nanos == LONG_MAX  # saturates like Java


# ---------------------------------------------------------------- start validation


def test_defaults_are_valid() -> None:
    params = StartRequest()
    assert validate_start(params) == []
    assert (params.queue, params.threads, params.timeout_seconds) == (1024, 1, 30.0)
    assert start_number_of_allocations(params) == 1


@pytest.mark.parametrize(
    ("params", "messages"),
    [
        (StartRequest(number_of_allocations=0), ["[number_of_allocations] must be a positive integer"]),
        (StartRequest(number_of_allocations=-3), ["[number_of_allocations] must be a positive integer"]),
        (
            StartRequest(threads_per_allocation=0),
            [
                "[threads_per_allocation] must be a positive integer",
                "[threads_per_allocation] must be a power of 2 less than or equal to 32",
            ],
        ),
        (
            StartRequest(threads_per_allocation=3),
            ["[threads_per_allocation] must be a power of 2 less than or equal to 32"],
        ),
        (
            StartRequest(threads_per_allocation=64),
            ["[threads_per_allocation] must be a power of 2 less than or equal to 32"],
        ),
        (StartRequest(queue_capacity=0), ["[queue_capacity] must be a positive integer"]),
        (StartRequest(queue_capacity=1_000_001), ["[queue_capacity] must be less than 1000000"]),
        (StartRequest(timeout_seconds=0), ["[timeout] must be positive"]),
        (StartRequest(timeout_seconds=MINUS_ONE.seconds), ["[timeout] must be positive"]),
        (
            StartRequest(wait_for="done"),
            ["invalid [wait_for] state [done]; must be one of [started,starting,fully_allocated"],
        ),
        (
            StartRequest(priority="urgent"),
            ["No enum constant org.elasticsearch.xpack.core.ml.inference.assignment.Priority.URGENT"],
        ),
        (
            StartRequest(priority="low", number_of_allocations=2),
            ["[number_of_allocations] must be 1 when [priority] is low"],
        ),
        (
            StartRequest(priority="low", threads_per_allocation=2),
            ["[threads_per_allocation] must be 1 when [priority] is low"],
        ),
        (
            StartRequest(priority="low", adaptive=AdaptiveSettings(True, 0, 4)),
            ["[max_number_of_allocations] must be 1 when [priority] is low"],
        ),
        (
            StartRequest(number_of_allocations=2, adaptive=AdaptiveSettings(enabled=True)),
            ["[number_of_allocations] cannot be set if adaptive allocations is enabled"],
        ),
        (
            StartRequest(adaptive=AdaptiveSettings(True, -2, 0)),
            [
                "[min_number_of_allocations] must be a non-negative integer or null",
                "[max_number_of_allocations] must be a positive integer or null",
            ],
        ),
        (
            StartRequest(adaptive=AdaptiveSettings(True, 5, 2)),
            ["[min_number_of_allocations] must not be larger than [max_number_of_allocations]"],
        ),
    ],
)
def test_each_start_rule_has_its_elasticsearch_message(params: StartRequest, messages: list[str]) -> None:
    assert validate_start(params) == messages


def test_valid_start_variants() -> None:
    for params in (
        StartRequest(
            wait_for="fully_allocated", priority="LOW", threads_per_allocation=1, number_of_allocations=1
        ),
        StartRequest(wait_for="STARTING", threads_per_allocation=32, queue_capacity=1_000_000),
        StartRequest(
            number_of_allocations=3,
            adaptive=AdaptiveSettings(enabled=False, max_number_of_allocations=2),
        ),
        StartRequest(adaptive=AdaptiveSettings(True, 0, 1), priority="low"),
        StartRequest(adaptive=AdaptiveSettings(True, -1, -1)),  # -1 = unset
    ):
        assert validate_start(params) == [], params


def test_errors_accumulate_in_elasticsearch_order_and_join_as_es_does() -> None:
    params = StartRequest(
        wait_for="nope",
        number_of_allocations=0,
        threads_per_allocation=6,
        queue_capacity=0,
        timeout_seconds=0,
        adaptive=AdaptiveSettings(True, 3, 1),
    )
    errors = validate_start(params)
    assert errors == [
        "invalid [wait_for] state [nope]; must be one of [started,starting,fully_allocated",
        "[number_of_allocations] must be a positive integer",
        "[number_of_allocations] cannot be set if adaptive allocations is enabled",
        "[min_number_of_allocations] must not be larger than [max_number_of_allocations]",
        "[threads_per_allocation] must be a power of 2 less than or equal to 32",
        "[queue_capacity] must be a positive integer",
        "[timeout] must be positive",
    ]
    assert validation_failed_message(errors[:2]) == (
        "Validation Failed: "
        "1: invalid [wait_for] state [nope]; must be one of [started,starting,fully_allocated;"
        "2: [number_of_allocations] must be a positive integer;"
    )


def test_start_allocations_follow_adaptive_min() -> None:
    assert start_number_of_allocations(StartRequest(number_of_allocations=4)) == 4
    adaptive = AdaptiveSettings(enabled=True, min_number_of_allocations=3)
    assert start_number_of_allocations(StartRequest(adaptive=adaptive)) == 3
    zero = AdaptiveSettings(enabled=True, min_number_of_allocations=0)
    assert start_number_of_allocations(StartRequest(adaptive=zero)) == 1


def test_resolve_start_applies_defaults_and_clamps() -> None:
    resolved = resolve_start(StartRequest(number_of_allocations=9, threads_per_allocation=8), [4, 4, 2])
    assert resolved == ResolvedStart(
        number_of_allocations=2,  # 4 threads each: 4 // 4 + 4 // 4 + 2 // 4
        threads_per_allocation=4,  # the largest node has 4 processors
        queue_capacity=1024,
        priority=Priority.NORMAL,
        wait_for=WaitFor.STARTED,
        notes=clamp_to_hardware(9, 8, [4, 4, 2]).notes,
    )
    assert len(resolved.notes) == 2
    adaptive = StartRequest(adaptive=AdaptiveSettings(True, 3, 5), wait_for="STARTING", queue_capacity=7)
    resolved = resolve_start(adaptive, [8])
    assert (resolved.number_of_allocations, resolved.wait_for, resolved.queue_capacity) == (
        3,
        WaitFor.STARTING,
        7,
    )
    assert resolved.notes == ()
    low = resolve_start(StartRequest(priority="LOW"), [])
    assert (low.priority, low.number_of_allocations, low.threads_per_allocation) == (Priority.LOW, 1, 1)
    with pytest.raises(ValidationFailed) as err:
        resolve_start(StartRequest(queue_capacity=0), [4])
    assert str(err.value) == "Validation Failed: 1: [queue_capacity] must be a positive integer;"


# ---------------------------------------------------------------- update validation


def test_update_rules() -> None:
    enabled = AdaptiveSettings(enabled=True)
    conflict = "[number_of_allocations] cannot be set if adaptive allocations is enabled"
    assert validate_update(2, enabled) == [conflict]
    # Adaptive already on for the deployment: setting a number is refused too.
    assert validate_update(2, None, existing=enabled) == [conflict]
    # ...unless the same request turns it off.
    off = AdaptiveSettings(enabled=False)
    assert validate_update(2, off, existing=enabled) == []
    assert validate_update(0, None) == ["[number_of_allocations] must be a positive integer"]
    # The merged settings are checked: a new min above the stored max.
    stored = AdaptiveSettings(True, 1, 4)
    raise_min = AdaptiveSettings(min_number_of_allocations=6)
    assert validate_update(None, raise_min, existing=stored) == [
        "[min_number_of_allocations] must not be larger than [max_number_of_allocations]"
    ]
    clear_max = AdaptiveSettings(min_number_of_allocations=6, max_number_of_allocations=-1)
    assert validate_update(None, clear_max, existing=stored) == []
    low = Priority.LOW
    assert validate_update(2, None, priority=low) == [
        "[number_of_allocations] must be 1 when [priority] is low"
    ]
    assert validate_update(1, None, priority=low) == []
    grow = AdaptiveSettings(True, 0, 3)
    assert validate_update(None, grow, priority=low) == [
        "[max_number_of_allocations] must be 1 when [priority] is low"
    ]


def test_merge_adaptive() -> None:
    stored = AdaptiveSettings(True, 1, 4)
    assert merge_adaptive(stored, None) == stored
    assert merge_adaptive(None, AdaptiveSettings(True, -1, 3)) == AdaptiveSettings(True, None, 3)
    assert merge_adaptive(stored, AdaptiveSettings(max_number_of_allocations=8)) == AdaptiveSettings(
        True, 1, 8
    )
    assert merge_adaptive(stored, AdaptiveSettings(False, -1, -1)) == AdaptiveSettings(False, None, None)
    assert validate_adaptive(AdaptiveSettings(True, 0, 1)) == []


# ---------------------------------------------------------------- hardware clamping


def test_clamping_reduces_instead_of_refusing() -> None:
    fit = clamp_to_hardware(10, 16, [4, 6])
    assert (fit.threads_per_allocation, fit.number_of_allocations) == (4, 2)  # 4 // 4 + 6 // 4
    assert fit.notes == (
        "[threads_per_allocation] reduced from 16 to 4: the largest node has 6 allocated processors",
        "[number_of_allocations] reduced from 10 to 2: "
        "the 2 node(s) hold at most 2 allocation(s) of 4 thread(s)",
    )
    assert clamp_to_hardware(3, 2, [4, 4]).notes == ()
    assert clamp_to_hardware(7, 2, []).number_of_allocations == 7  # nothing known: nothing changed
    tiny = clamp_to_hardware(5, 4, [1, 1])
    assert (tiny.threads_per_allocation, tiny.number_of_allocations) == (1, 2)
    with pytest.raises(ValidationFailed):
        clamp_to_hardware(1, 1, [0])


@PROPS
@given(
    allocations=st.integers(min_value=1, max_value=200),
    threads=st.sampled_from([1, 2, 4, 8, 16, 32]),
    nodes=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=8),
)
def test_clamped_values_never_exceed_the_hardware(allocations: int, threads: int, nodes: list[int]) -> None:
    fit = clamp_to_hardware(allocations, threads, nodes)
    assert 1 <= fit.threads_per_allocation <= max(nodes)
    assert fit.threads_per_allocation & (fit.threads_per_allocation - 1) == 0  # still a power of 2
    assert 1 <= fit.number_of_allocations <= max(1, sum(p // fit.threads_per_allocation for p in nodes))
    assert fit.threads_per_allocation <= threads and fit.number_of_allocations <= allocations
    within = threads <= max(nodes) and allocations <= max(1, sum(p // threads for p in nodes))
    assert (fit == clamp_to_hardware(allocations, threads, nodes)) and (within == (fit.notes == ()))
    if within:
        assert (fit.number_of_allocations, fit.threads_per_allocation) == (allocations, threads)
    if threads > max(nodes):  # the largest power of 2 that fits the largest node
        assert fit.threads_per_allocation * 2 > max(nodes)
