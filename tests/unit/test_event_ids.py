"""Event ids sort in creation order, even when the caller's `now` was read earlier (a sweep that
began before a request re-plans what the request just created)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modelfleet.control.ids import event_id


def test_a_later_event_with_a_stale_now_still_sorts_after() -> None:
    now = datetime.now(UTC)
    first = event_id(now + timedelta(seconds=5))  # a request whose clock read is later
    second = event_id(now)  # then an event from work that began earlier
    assert second > first


def test_ids_are_unique_and_increasing() -> None:
    now = datetime(2020, 1, 1, tzinfo=UTC)
    ids = [event_id(now) for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000
