"""CRON schedules of periodic pipeline deployments: validation and fire times, pure.

The expression is the classic five fields (minute hour day-of-month month day-of-week), what the
pipeline client sends and what EventBridge Scheduler's `cron(...)` takes (after translation). Times
are passed in; nothing here reads a clock, so the local scheduler can run on an injected one.
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter

MAX_FIRES_PER_TICK = 100  # a clock that jumps far ahead fires at most this many missed runs


class InvalidCron(ValueError):
    """The expression is not a valid five-field CRON schedule; the message says why."""


def validate(expression: str) -> str:
    """The expression, normalised (single spaces); InvalidCron otherwise."""
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidCron(
            f"invalid CRON schedule {expression!r}: expected 5 fields "
            f"(minute hour day-of-month month day-of-week), got {len(fields)}"
        )
    normalised = " ".join(fields)
    if not croniter.is_valid(normalised):
        raise InvalidCron(f"invalid CRON schedule {expression!r}: a field is out of range or malformed")
    try:
        croniter(normalised, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except (CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, ValueError, KeyError) as e:
        raise InvalidCron(f"invalid CRON schedule {expression!r}: {e}") from None
    return normalised


def next_after(expression: str, after: datetime) -> datetime:
    """The first fire time strictly after `after` (UTC, timezone-aware)."""
    if after.tzinfo is None:
        raise ValueError("`after` must be timezone-aware")
    nxt: datetime = croniter(validate(expression), after.astimezone(UTC)).get_next(datetime)
    return nxt.astimezone(UTC)


def due_fires(expression: str, next_fire_at: datetime, now: datetime) -> tuple[list[datetime], datetime]:
    """The fire times that are due at `now` (from `next_fire_at` on) and the next one after them.

    A scheduler that was down for a while fires each missed run once, up to MAX_FIRES_PER_TICK
    (then it skips ahead, as EventBridge would rather than flood)."""
    fires: list[datetime] = []
    current = next_fire_at
    while current <= now and len(fires) < MAX_FIRES_PER_TICK:
        fires.append(current)
        current = next_after(expression, current)
    if current <= now:
        current = next_after(expression, now)
    return fires, current


def to_eventbridge(expression: str) -> str:
    """EventBridge Scheduler's `cron(min hour dom month dow year)`: one of dom/dow must be `?`."""
    minute, hour, dom, month, dow = validate(expression).split()
    if dow == "*":
        dow = "?"
    elif dom == "*":
        dom = "?"
    return f"cron({minute} {hour} {dom} {month} {dow} *)"


def human_readable(expression: str) -> str:
    """A short description for the client's `human_readable_schedule` field."""
    minute, hour, dom, month, dow = validate(expression).split()
    if (minute, hour, dom, month, dow) == ("*", "*", "*", "*", "*"):
        return "every minute"
    if minute.startswith("*/") and (hour, dom, month, dow) == ("*", "*", "*", "*"):
        return f"every {minute[2:]} minutes"
    if minute.isdigit() and hour.isdigit() and (dom, month, dow) == ("*", "*", "*"):
        return f"every day at {int(hour):02d}:{int(minute):02d} UTC"
    return f"cron {validate(expression)} (UTC)"
