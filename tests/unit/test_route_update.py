"""What a node's heartbeat report does to each of its routes (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modelfleet.control.nodes import DELETE, route_update
from modelfleet.core.lifecycle import RoutingState
from schemas.deployments import RouteRecord
from schemas.nodes import RouteReport

S = RoutingState


def route(state: RoutingState, current: int = 0, reason: str = "") -> RouteRecord:
    return RouteRecord(
        deployment_uid="u",
        project_id="p",
        deployment_id="d",
        version_id="1",
        node_id="n",
        target_allocations=1,
        current_allocations=current,
        routing_state=state,
        reason=reason,
        updated_at=datetime(2026, 11, 22, tzinfo=UTC),
    )


def report(state: RoutingState, current: int = 0, reason: str = "") -> RouteReport:
    return RouteReport(
        deployment_uid="u", version_id="1", routing_state=state, current_allocations=current, reason=reason
    )


@pytest.mark.parametrize(
    ("r", "rep", "expected"),
    [
        (route(S.STARTED, 1), report(S.STARTED, 1), None),  # a steady heartbeat changes nothing
        (route(S.STARTING), None, None),  # not picked up yet
        (route(S.STARTING), report(S.STARTED, 2), (S.STARTED, 2, "")),
        (route(S.STARTING), report(S.FAILED, 0, "bad file"), (S.FAILED, 0, "bad file")),
        (route(S.STARTED, 1), None, (S.STARTING, 0, "node no longer serves it")),  # the node restarted
        (route(S.STARTED, 1), report(S.STOPPED), (S.STARTING, 0, "")),
        (route(S.FAILED, 0, "x"), report(S.STARTED, 1), (S.STARTED, 1, "")),
        (route(S.STOPPING), None, DELETE),  # unloaded
        (route(S.STOPPING), report(S.STOPPED), DELETE),
        (route(S.STOPPING), report(S.STARTED, 1), None),  # still unloading
    ],
)
def test_route_update(r: RouteRecord, rep: RouteReport | None, expected: object) -> None:
    assert route_update(r, rep) == expected
