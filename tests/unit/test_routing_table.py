"""The gateway's in-memory routing tables, over an in-memory stand-in for the state store."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest

from modelfleet.core.lifecycle import DeploymentState, NodeState, RoutingState
from modelfleet.gateway.routing_table import RoutingTables
from schemas.deployments import DeploymentRecord, RouteRecord, VersionSpec
from schemas.nodes import NodeKind, NodeRecord

NOW = datetime(2026, 11, 22, tzinfo=UTC)


class StoreStandIn:
    """The four reads RoutingTables makes, from dictionaries; counts loads and can hold one."""

    def __init__(self) -> None:
        self.deployment = DeploymentRecord(
            project_id="p",
            deployment_id="d",
            uid="u",
            state=DeploymentState.STARTED,
            versions=[
                VersionSpec(version_id="a", model_id="m", weight=70, allocations=1, threads_per_allocation=1),
                VersionSpec(version_id="b", model_id="m", weight=30, allocations=1, threads_per_allocation=1),
            ],
            created_at=NOW,
            updated_at=NOW,
            state_since=NOW,
        )
        self.started: set[str] = {"a"}
        self.loads = 0
        self.gate: threading.Event | None = None

    def get_deployment(self, project_id: str, deployment_id: str) -> DeploymentRecord | None:
        self.loads += 1
        if self.gate is not None:
            self.gate.wait(5)
        return self.deployment if (project_id, deployment_id) == ("p", "d") else None

    def routes(self, uid: str) -> list[RouteRecord]:
        return [
            RouteRecord(
                deployment_uid=uid,
                project_id="p",
                deployment_id="d",
                version_id=v,
                node_id=f"n-{v}",
                target_allocations=1,
                current_allocations=1,
                updated_at=NOW,
                routing_state=RoutingState.STARTED if v in self.started else RoutingState.STARTING,
            )
            for v in ("a", "b")
        ]

    def list_nodes(self) -> list[NodeRecord]:
        return [
            NodeRecord(
                node_id=f"n-{v}",
                kind=NodeKind.CLOUD,
                processors=2,
                memory_bytes=2**30,
                url=f"http://{v}",
                state=NodeState.READY,
                registered_at=NOW,
                updated_at=NOW,
            )
            for v in ("a", "b")
        ]

    def get_model(self, project_id: str, model_id: str) -> None:
        return None


def tables(store: StoreStandIn, **kw: float) -> RoutingTables:
    return RoutingTables(store, **kw)  # type: ignore[arg-type]


def test_a_fully_ready_deployment_is_read_once() -> None:
    store = StoreStandIn()
    store.started = {"a", "b"}

    async def run() -> None:
        t = tables(store)
        for _ in range(50):
            assert await t.get("p", "d") is not None

    asyncio.run(run())
    assert store.loads == 1


def test_a_half_ready_deployment_is_rechecked_and_sees_the_new_route() -> None:
    store = StoreStandIn()

    async def run() -> None:
        t = tables(store, recheck_seconds=0.0)
        first = await t.get("p", "d")
        assert first is not None and not first.fully_ready()
        store.started = {"a", "b"}
        second = await t.get("p", "d")
        assert second is not None and second.fully_ready()

    asyncio.run(run())


def test_unknown_deployments_are_none() -> None:
    assert asyncio.run(tables(StoreStandIn()).get("p", "nope")) is None
    assert asyncio.run(tables(StoreStandIn()).get("other-project", "d")) is None


def test_a_burst_of_reloads_shares_one_read() -> None:
    store = StoreStandIn()
    store.gate = threading.Event()

    async def run() -> None:
        t = tables(store)
        burst = [asyncio.create_task(t.reload(("p", "d"))) for _ in range(20)]
        await asyncio.sleep(0)  # let every task reach the shared read
        store.gate.set()
        results = await asyncio.gather(*burst)
        assert all(r is results[0] for r in results)

    asyncio.run(run())
    assert store.loads == 1


def test_a_load_overtaken_by_an_invalidation_is_not_kept() -> None:
    store = StoreStandIn()
    store.started = {"a", "b"}
    store.gate = threading.Event()

    async def run() -> None:
        t = tables(store)
        loading = asyncio.create_task(t.get("p", "d"))
        await asyncio.sleep(0)
        t.invalidate_uid("u")  # an event arrives while the read is in flight
        store.gate.set()
        assert await loading is not None  # this request still gets an answer
        store.gate = None
        await t.get("p", "d")  # ...but the next one reads again

    asyncio.run(run())
    assert store.loads == 2


@pytest.mark.parametrize("requests", [100, 1000])
def test_picks_follow_the_weights_exactly_over_ready_versions(requests: int) -> None:
    store = StoreStandIn()
    store.started = {"a", "b"}
    entry = asyncio.run(tables(store).get("p", "d"))
    assert entry is not None
    counts = {"a": 0, "b": 0}
    for _ in range(requests):
        choice = entry.pick()
        assert choice is not None
        counts[choice[0].version_id] += 1
    assert counts == {"a": requests * 7 // 10, "b": requests * 3 // 10}
    assert entry.pick("b") is not None and entry.pick("b")[1] == "http://b"  # type: ignore[index]
