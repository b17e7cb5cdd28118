"""Lifecycle transition tables and the derivation of a deployment's state from its routes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelfleet.core.errors import InvalidTransition
from modelfleet.core.lifecycle import (
    DEPLOYMENT_TRANSITIONS,
    DeploymentState,
    ModelState,
    NodeState,
    RouteStatus,
    RoutingState,
    can_transition,
    derive_deployment_state,
    transition,
)


def test_every_state_has_a_row_in_its_table() -> None:
    assert set(DEPLOYMENT_TRANSITIONS) == set(DeploymentState)


def test_allowed_and_refused_transitions() -> None:
    assert transition(DeploymentState.STARTING, DeploymentState.STARTED) == DeploymentState.STARTED
    assert transition(NodeState.LOST, NodeState.READY) == NodeState.READY
    with pytest.raises(InvalidTransition, match="from 'stopping' to 'started'"):
        transition(DeploymentState.STOPPING, DeploymentState.STARTED)
    with pytest.raises(InvalidTransition):
        transition(ModelState.READY, ModelState.UPLOADING)
    with pytest.raises(InvalidTransition):
        transition(NodeState.DEREGISTERED, NodeState.READY)
    assert can_transition(RoutingState.FAILED, RoutingState.FAILED)  # staying put is always allowed


routes = st.lists(
    st.builds(
        RouteStatus,
        st.sampled_from(list(RoutingState)),
        st.integers(0, 4),
        st.integers(0, 4),
        st.text(max_size=5),
    ),
    max_size=6,
)


@given(st.sampled_from(list(DeploymentState)), routes, st.booleans())
def test_derived_state_is_always_a_legal_next_state(
    current: DeploymentState, rs: list[RouteStatus], timed_out: bool
) -> None:
    derived = derive_deployment_state(current, rs, deploy_timed_out=timed_out)
    assert can_transition(current, derived.state), (current, derived)


@given(routes)
def test_any_started_route_means_started(rs: list[RouteStatus]) -> None:
    derived = derive_deployment_state(DeploymentState.STARTING, rs)
    started = any(r.routing_state == RoutingState.STARTED for r in rs)
    assert (derived.state == DeploymentState.STARTED) == started


def test_derivation_cases() -> None:
    failed = RouteStatus(RoutingState.FAILED, 0, 1, "INVALID_PROTOBUF")
    starting = RouteStatus(RoutingState.STARTING, 0, 1)
    d = derive_deployment_state
    assert d(DeploymentState.PENDING, [], unplaced_reason="not enough processors") == (
        d(DeploymentState.PENDING, [], unplaced_reason="not enough processors")
    )
    assert d(DeploymentState.STARTING, []).state == DeploymentState.PENDING
    assert d(DeploymentState.STARTING, [], "no room").reason == "no room"
    assert d(DeploymentState.STARTING, [failed]).state == DeploymentState.FAILED
    assert d(DeploymentState.STARTING, [failed]).reason == "INVALID_PROTOBUF"
    assert d(DeploymentState.STARTING, [failed, starting]).state == DeploymentState.STARTING
    assert d(DeploymentState.STARTING, [starting], deploy_timed_out=True).state == DeploymentState.FAILED
    assert (
        d(DeploymentState.STOPPING, [RouteStatus(RoutingState.STOPPING, 1, 0)]).state
        == DeploymentState.STOPPING
    )
    assert d(DeploymentState.STOPPING, []).state == DeploymentState.STOPPED
