"""A service's status from its core state and route health; auto-stop due times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelfleet.core.errors import InvalidTransition, ValidationFailed
from modelfleet.core.lifecycle import DeploymentState
from modelfleet.core.service_state import (
    EVENT_CODES,
    ServiceState,
    VersionHealth,
    auto_stop_due,
    derive_service_state,
    service_transition,
    stop_after,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def v(target: int, ready: int, failed: int = 0) -> VersionHealth:
    return VersionHealth("1", 100, target, ready, failed)


@pytest.mark.parametrize(
    ("core", "versions", "ever", "expected"),
    [
        (DeploymentState.PENDING, [v(1, 0)], False, ServiceState.PENDING),
        (DeploymentState.STARTING, [v(1, 0)], False, ServiceState.DEPLOYING),
        (DeploymentState.STARTED, [v(2, 1)], False, ServiceState.DEPLOYING),
        (DeploymentState.STARTED, [v(2, 2)], False, ServiceState.RUNNING),
        (DeploymentState.STARTED, [v(2, 1)], True, ServiceState.CONCERNING),
        (DeploymentState.STARTED, [v(2, 1, failed=1)], False, ServiceState.CONCERNING),
        (DeploymentState.STARTED, [v(2, 2), VersionHealth("2", 0, 0, 0)], False, ServiceState.RUNNING),
        (DeploymentState.FAILED, [v(1, 0, 1)], False, ServiceState.FAILED),
        (DeploymentState.STOPPING, [v(1, 1)], True, ServiceState.STOPPING),
        (DeploymentState.STOPPED, [], True, ServiceState.STOPPED),
    ],
)
def test_derive(
    core: DeploymentState, versions: list[VersionHealth], ever: bool, expected: ServiceState
) -> None:
    assert derive_service_state(core, "why", versions, ever).state == expected


def test_event_codes_are_the_seeds() -> None:
    assert {s.value: c for s, c in EVENT_CODES.items()} == {
        "failed": 1,
        "running": 3,
        "concerning": 7,
        "pending": 11,
    }


def test_transitions() -> None:
    assert service_transition(ServiceState.RUNNING, ServiceState.CONCERNING) == ServiceState.CONCERNING
    with pytest.raises(InvalidTransition):
        service_transition(ServiceState.STOPPING, ServiceState.RUNNING)


def test_stop_after_units_and_compression() -> None:
    assert stop_after("MINUTES", 2) == timedelta(minutes=2)
    assert stop_after("HOURS", 1) == timedelta(hours=1)
    assert stop_after("DAYS", 1) == timedelta(days=1)
    assert stop_after("HOURS", 1, seconds_per_minute=1) == timedelta(seconds=60)
    with pytest.raises(ValidationFailed):
        stop_after("WEEKS", 1)


@given(st.integers(0, 10_000), st.integers(1, 10_000))
def test_auto_stop_is_due_exactly_after_the_duration(elapsed: int, after: int) -> None:
    now = T0 + timedelta(seconds=elapsed)
    assert auto_stop_due(T0, timedelta(seconds=after), now) == (elapsed >= after)
    assert not auto_stop_due(None, timedelta(seconds=after), now)
    assert not auto_stop_due(T0, None, now)
