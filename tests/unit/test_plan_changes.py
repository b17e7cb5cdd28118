"""The planning executor's decisions over a snapshot: routes to add/remove and the derived state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modelfleet.control.planning import Snapshot, plan_changes
from modelfleet.core.lifecycle import DeploymentState, NodeState, RoutingState
from schemas.deployments import DeploymentRecord, RouteRecord, VersionSpec
from schemas.nodes import NodeKind, NodeRecord

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def node(node_id: str, processors: int = 2, state: NodeState = NodeState.READY) -> NodeRecord:
    return NodeRecord(
        node_id=node_id,
        kind=NodeKind.CLOUD,
        processors=processors,
        memory_bytes=8 * 1024**3,
        url=f"http://{node_id}",
        state=state,
        registered_at=NOW,
        updated_at=NOW,
    )


def deployment(
    dep_id: str,
    allocations: int = 1,
    state: DeploymentState = DeploymentState.PENDING,
    threads: int = 1,
    since: datetime = NOW,
) -> DeploymentRecord:
    return DeploymentRecord(
        project_id="p",
        deployment_id=dep_id,
        uid=f"uid-{dep_id}",
        state=state,
        versions=[
            VersionSpec(
                version_id="1",
                model_id="m",
                weight=100,
                allocations=allocations,
                threads_per_allocation=threads,
                model_bytes=1000,
            )
        ],
        created_at=NOW,
        updated_at=NOW,
        state_since=since,
    )


def route(
    d: DeploymentRecord, node_id: str, n: int = 1, state: RoutingState = RoutingState.STARTED
) -> RouteRecord:
    return RouteRecord(
        deployment_uid=d.uid,
        project_id="p",
        deployment_id=d.deployment_id,
        version_id="1",
        node_id=node_id,
        target_allocations=n,
        current_allocations=n,
        routing_state=state,
        updated_at=NOW,
    )


def beats(*node_ids: str) -> dict[str, float]:
    return {n: NOW.timestamp() for n in node_ids}


def test_a_new_deployment_is_placed_and_starts() -> None:
    d = deployment("a", allocations=2)
    (ch,) = plan_changes(Snapshot([node("n1"), node("n2")], beats("n1", "n2"), [d]), NOW, 5.0)
    assert ch.deployment.state == DeploymentState.STARTING and ch.deployment.version_no == 2
    assert sum(r.target_allocations for r in ch.upserts) == 2 and not ch.deletes
    assert [e.to_state for e in ch.events if e.type.value == "deployment.state_changed"] == ["starting"]


def test_an_unchanged_world_gives_no_change() -> None:
    d = deployment("a", state=DeploymentState.STARTED)
    snap = Snapshot([node("n1")], beats("n1"), [d], {d.uid: [route(d, "n1")]})
    assert plan_changes(snap, NOW, 5.0) == []


def test_routes_on_a_silent_node_move_to_a_live_one() -> None:
    d = deployment("a", state=DeploymentState.STARTED)
    snap = Snapshot([node("n1"), node("n2")], beats("n2"), [d], {d.uid: [route(d, "n1")]})
    (ch,) = plan_changes(snap, NOW, 5.0)
    assert [r.node_id for r in ch.deletes] == ["n1"]
    assert [(r.node_id, r.routing_state) for r in ch.upserts] == [("n2", RoutingState.STARTING)]
    assert ch.deployment.state == DeploymentState.STARTING


def test_no_room_leaves_the_deployment_pending_with_the_reason() -> None:
    big = deployment("big", threads=4)
    (ch,) = plan_changes(Snapshot([node("n1", processors=2)], beats("n1"), [big]), NOW, 5.0)
    assert ch.deployment.state == DeploymentState.PENDING
    assert "processors" in ch.deployment.reason


def test_stopping_deployments_are_left_alone() -> None:
    d = deployment("a", state=DeploymentState.STOPPING)
    snap = Snapshot([node("n1")], beats("n1"), [d], {d.uid: [route(d, "n1", state=RoutingState.STOPPING)]})
    assert plan_changes(snap, NOW, 5.0) == []


def test_a_deploy_that_outlives_its_timeout_fails() -> None:
    d = deployment("a", state=DeploymentState.STARTING, since=NOW - timedelta(seconds=301))
    snap = Snapshot([node("n1")], beats("n1"), [d], {d.uid: [route(d, "n1", state=RoutingState.STARTING)]})
    (ch,) = plan_changes(snap, NOW, 5.0)
    assert ch.deployment.state == DeploymentState.FAILED
    assert "deploy timeout" in ch.deployment.reason
