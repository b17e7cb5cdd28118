"""CRON schedules of periodic pipeline deployments: validation and fire times."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.core import cron

EXPRESSIONS = ["* * * * *", "*/5 * * * *", "0 3 * * *", "15,45 8-18 * * 1-5", "0 0 1 * *", "30 2 29 2 *"]
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC))


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_valid_expressions_are_kept(expr: str) -> None:
    assert cron.validate(expr) == expr
    assert cron.validate(f"  {expr.replace(' ', '   ')} ") == expr


@pytest.mark.parametrize(
    ("expr", "why"),
    [
        ("nonsense", "expected 5 fields"),
        ("* * * *", "expected 5 fields"),
        ("* * * * * *", "expected 5 fields"),
        ("61 * * * *", "out of range"),
        ("* 24 * * *", "out of range"),
        ("* * 32 * *", "out of range"),
        ("* * * 13 *", "out of range"),
        ("*/0 * * * *", "invalid CRON"),
        ("a b c d e", "invalid CRON"),
    ],
)
def test_invalid_expressions_are_refused_with_a_reason(expr: str, why: str) -> None:
    with pytest.raises(cron.InvalidCron, match=why):
        cron.validate(expr)


@given(st.sampled_from(EXPRESSIONS), moments)
@settings(max_examples=200, deadline=None)
def test_next_after_is_the_first_match_strictly_after(expr: str, after: datetime) -> None:
    nxt = cron.next_after(expr, after)
    assert nxt > after
    assert croniter.match(expr, nxt)
    # no match in between: the match before `nxt` is not after `after`
    previous = croniter(expr, nxt).get_prev(datetime)
    assert previous <= after


@given(st.sampled_from(EXPRESSIONS[:4]), moments, st.integers(min_value=0, max_value=150))
@settings(max_examples=100, deadline=None)
def test_due_fires_are_every_missed_run_then_the_next(expr: str, start: datetime, minutes_late: int) -> None:
    first = cron.next_after(expr, start)
    now = first + timedelta(minutes=minutes_late, seconds=30)
    fires, nxt = cron.due_fires(expr, first, now)
    assert fires and fires[0] == first
    assert all(f <= now for f in fires)
    assert all(a < b for a, b in itertools.pairwise(fires))
    assert nxt > now
    if len(fires) < cron.MAX_FIRES_PER_TICK:
        assert fires[1:] == [cron.next_after(expr, f) for f in fires[:-1]]
        assert nxt == cron.next_after(expr, fires[-1])


def test_nothing_is_due_before_the_fire_time() -> None:
    at = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    assert cron.due_fires("*/5 * * * *", at, at - timedelta(seconds=1)) == ([], at)


def test_a_far_jump_fires_a_bounded_number_of_runs() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    fires, nxt = cron.due_fires("* * * * *", at, at + timedelta(days=3))
    assert len(fires) == cron.MAX_FIRES_PER_TICK
    assert nxt > at + timedelta(days=3)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cron.next_after("* * * * *", datetime(2026, 1, 1))


def test_eventbridge_form_and_descriptions() -> None:
    assert cron.to_eventbridge("0 3 * * *") == "cron(0 3 * * ? *)"
    assert cron.to_eventbridge("0 3 * * 1") == "cron(0 3 ? * 1 *)"
    assert cron.human_readable("*/5 * * * *") == "every 5 minutes"
    assert cron.human_readable("30 2 * * *") == "every day at 02:30 UTC"
