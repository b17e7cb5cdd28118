"""When `_start`'s `wait_for` counts as reached: routes and the deployment record must agree."""

from __future__ import annotations

import pytest

from modelfleet.core.lifecycle import DeploymentState, RoutingState
from modelfleet.faces.elastic.deployments import assignment_view, reached
from tests.unit.test_plan_changes import deployment, route


def test_a_started_route_ahead_of_its_record_is_not_yet_started() -> None:
    # The node has marked its route started; the record has not followed yet.
    d = deployment("a", allocations=1, state=DeploymentState.STARTING)
    routes = [route(d, "n1")]
    assert not reached("started", d, routes)
    assert not reached("fully_allocated", d, routes)
    assert reached("starting", d, routes)


def test_once_the_record_follows_the_answer_says_started() -> None:
    d = deployment("a", allocations=2, state=DeploymentState.STARTED)
    half = [route(d, "n1", 1)]
    assert reached("started", d, half) and not reached("fully_allocated", d, half)
    assert assignment_view(d, half)["assignment_state"] == "started"
    full = [route(d, "n1", 1), route(d, "n2", 1)]
    assert reached("fully_allocated", d, full)


@pytest.mark.parametrize("wait_for", ["started", "fully_allocated"])
def test_no_started_route_is_not_reached(wait_for: str) -> None:
    d = deployment("a", allocations=1, state=DeploymentState.STARTED)
    assert not reached(wait_for, d, [route(d, "n1", state=RoutingState.STARTING)])


def test_a_deployment_scaled_to_zero_on_purpose_is_started() -> None:
    d = deployment("a", allocations=0, state=DeploymentState.STARTED)
    assert reached("started", d, [])
