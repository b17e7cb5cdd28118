from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.core.errors import ValidationFailed
from modelfleet.core.placement import (
    BASE_MEMORY_BYTES,
    MIB,
    MemoryProfile,
    NodeCapacity,
    Placement,
    PlacementContext,
    PlacementPlan,
    PlacementRequest,
    Priority,
    estimate_memory_bytes,
    plan,
)

GIB = 1024 * MIB
NOW = datetime(2025, 1, 1, tzinfo=UTC)
POOLS: list[str | None] = [None, None, None, "gpu"]
PROPS = settings(max_examples=60, deadline=None, database=None)


def ctx_of(nodes: Sequence[NodeCapacity], requests: Sequence[PlacementRequest]) -> PlacementContext:
    return PlacementContext(now=NOW, nodes=list(nodes), requests=list(requests))


def with_current(ctx: PlacementContext, p: PlacementPlan) -> PlacementContext:
    requests = [replace(r, current=dict(p.placements[r.unit_id].allocations)) for r in ctx.requests]
    return ctx_of(ctx.nodes, requests)


def allocations(p: PlacementPlan) -> dict[str, Mapping[str, int]]:
    return {unit: placement.allocations for unit, placement in p.placements.items()}


def check_invariants(ctx: PlacementContext, p: PlacementPlan) -> None:
    nodes = {n.node_id: n for n in ctx.nodes}
    threads = dict.fromkeys(nodes, 0)
    memory = dict.fromkeys(nodes, 0)
    assert set(p.placements) == {r.unit_id for r in ctx.requests}
    for r in ctx.requests:
        placement = p.placements[r.unit_id]
        target = min(r.target_allocations, 1) if r.priority is Priority.LOW else r.target_allocations
        placed = sum(placement.allocations.values())
        assert placed <= target
        assert placement.unplaced == target - placed
        assert (placement.reason != "") == (placement.unplaced > 0)
        for node_id, count in placement.allocations.items():
            node = nodes[node_id]  # never an unknown node
            assert count > 0
            assert node.schedulable
            assert node.pool == r.pool
            assert r.max_allocations_per_node is None or count <= r.max_allocations_per_node
            if r.priority is Priority.NORMAL:
                threads[node_id] += count * r.threads_per_allocation
            memory[node_id] += estimate_memory_bytes(r.memory, count)
    for node_id, node in nodes.items():
        assert threads[node_id] <= node.processors, node_id
        assert memory[node_id] <= node.memory_bytes, node_id


# ---------------------------------------------------------------- strategies


@st.composite
def node_lists(draw: st.DrawFn) -> list[NodeCapacity]:
    count = draw(st.integers(min_value=1, max_value=6))
    return [
        NodeCapacity(
            node_id=f"node-{i}",
            processors=draw(st.integers(min_value=1, max_value=16)),
            memory_bytes=draw(st.integers(min_value=512 * MIB, max_value=16 * GIB)),
            pool=draw(st.sampled_from(POOLS)),
            schedulable=draw(st.sampled_from([True, True, True, False])),
        )
        for i in range(1, count + 1)
    ]


@st.composite
def requests_for(
    draw: st.DrawFn, unit_id: str, node_ids: Sequence[str], random_current: bool
) -> PlacementRequest:
    model = draw(st.integers(min_value=1_000_000, max_value=2_000_000_000))
    if draw(st.booleans()):
        profile = MemoryProfile(model_bytes=model)
    else:
        profile = MemoryProfile(
            model_bytes=model,
            per_deployment_memory_bytes=draw(st.integers(min_value=0, max_value=1 * GIB)),
            per_allocation_memory_bytes=draw(st.integers(min_value=0, max_value=256 * MIB)),
            cache_size_bytes=draw(st.one_of(st.none(), st.integers(min_value=0, max_value=3 * GIB))),
        )
    current: dict[str, int] = {}
    if random_current:  # arbitrary, possibly stale or oversubscribing, `current`
        current = draw(
            st.dictionaries(
                st.sampled_from([*node_ids, "node-gone"]), st.integers(min_value=0, max_value=4), max_size=3
            )
        )
    return PlacementRequest(
        unit_id=unit_id,
        target_allocations=draw(st.integers(min_value=0, max_value=8)),
        threads_per_allocation=draw(st.sampled_from([1, 2, 4, 8])),
        memory=profile,
        priority=draw(st.sampled_from([Priority.NORMAL, Priority.NORMAL, Priority.LOW])),
        current=current,
        pool=draw(st.sampled_from(POOLS)),
        max_allocations_per_node=draw(st.sampled_from([None, None, 1, 2, 3])),
    )


@st.composite
def fresh_contexts(draw: st.DrawFn, random_current: bool = False) -> PlacementContext:
    nodes = draw(node_lists())
    node_ids = [n.node_id for n in nodes]
    count = draw(st.integers(min_value=1, max_value=8))
    requests = [draw(requests_for(f"unit-{i}", node_ids, random_current)) for i in range(count)]
    return ctx_of(nodes, requests)


@st.composite
def replanned_contexts(draw: st.DrawFn) -> PlacementContext:
    """`current` comes from a previous plan; then nodes get lost and targets change."""
    ctx = draw(fresh_contexts())
    previous = with_current(ctx, plan(ctx))
    nodes = [
        replace(n, schedulable=n.schedulable and draw(st.sampled_from([True, True, False])))
        for n in previous.nodes
    ]
    if len(nodes) > 1 and draw(st.booleans()):
        nodes.pop(draw(st.integers(min_value=0, max_value=len(nodes) - 1)))  # a node disappears
    requests = [
        replace(r, target_allocations=draw(st.integers(min_value=0, max_value=8)))
        if draw(st.booleans())
        else r
        for r in previous.requests
    ]
    return ctx_of(nodes, requests)


any_contexts = st.one_of(fresh_contexts(), fresh_contexts(random_current=True), replanned_contexts())


# ---------------------------------------------------------------- properties


@PROPS
@given(ctx=any_contexts)
def test_plan_respects_capacity_schedulability_pools_and_targets(ctx: PlacementContext) -> None:
    check_invariants(ctx, plan(ctx))


@PROPS
@given(ctx=any_contexts)
def test_replanning_the_plan_is_zero_churn(ctx: PlacementContext) -> None:
    first = plan(ctx)
    again_ctx = with_current(ctx, first)
    again = plan(again_ctx)
    assert again == first  # allocations, unplaced counts and reasons
    assert again.changed_units(again_ctx) == []


@PROPS
@given(ctx=any_contexts, data=st.data())
def test_existing_placements_survive_a_new_unit(ctx: PlacementContext, data: st.DataObject) -> None:
    first = plan(ctx)
    node_ids = [n.node_id for n in ctx.nodes]
    newcomer = data.draw(requests_for("unit-new", node_ids, random_current=False))
    newcomer = replace(newcomer, unit_id=data.draw(st.sampled_from(["a-first", "unit-new", "z-last"])))
    grown = with_current(ctx, first)
    grown = ctx_of(grown.nodes, [*grown.requests, newcomer])
    second = plan(grown)
    check_invariants(grown, second)
    new_nodes = set(second.placements[newcomer.unit_id].allocations)
    for r in ctx.requests:
        before, after = first.placements[r.unit_id], second.placements[r.unit_id]
        if r.priority is Priority.NORMAL or newcomer.priority is Priority.LOW:
            assert after.allocations == before.allocations, r.unit_id
        elif after.allocations != before.allocations:
            # A low unit is only evicted from a node the new normal unit now uses.
            assert newcomer.priority is Priority.NORMAL
            assert set(before.allocations) <= new_nodes


@PROPS
@given(ctx=any_contexts)
def test_low_units_never_affect_normal_units(ctx: PlacementContext) -> None:
    normal_only = ctx_of(ctx.nodes, [r for r in ctx.requests if r.priority is Priority.NORMAL])
    full, reduced = plan(ctx), plan(normal_only)
    for unit_id, placement in reduced.placements.items():
        assert full.placements[unit_id] == placement


@PROPS
@given(ctx=any_contexts, seed=st.integers(min_value=0, max_value=2**32))
def test_deterministic_and_independent_of_input_order(ctx: PlacementContext, seed: int) -> None:
    rng = random.Random(seed)
    nodes, requests = list(ctx.nodes), list(ctx.requests)
    rng.shuffle(nodes)
    rng.shuffle(requests)
    assert plan(ctx) == plan(ctx)
    assert plan(ctx) == plan(ctx_of(nodes, requests))


@PROPS
@given(data=st.data())
def test_normal_demand_evicts_low_units_that_no_longer_fit(data: st.DataObject) -> None:
    processors = data.draw(st.integers(min_value=1, max_value=16))
    memory = data.draw(st.integers(min_value=512 * MIB, max_value=16 * GIB))
    headroom = (memory - BASE_MEMORY_BYTES) // 2  # largest model that fits alone
    low_model = data.draw(st.integers(min_value=1_000_000, max_value=headroom))
    low = PlacementRequest("low", 1, 1, MemoryProfile(low_model), priority=Priority.LOW)
    low_bytes = estimate_memory_bytes(low.memory, 1)
    nodes = [NodeCapacity("node-1", processors, memory)]
    assert plan(ctx_of(nodes, [low])).placements["low"].allocations == {"node-1": 1}
    # A normal unit that fits alone, but not next to the low one, and takes every processor.
    min_model = max(1, (memory - low_bytes - BASE_MEMORY_BYTES) // 2 + 1)
    normal_model = data.draw(st.integers(min_value=min_model, max_value=headroom))
    threads = data.draw(st.sampled_from([t for t in (1, 2, 4, 8) if t <= processors]))
    normal = PlacementRequest("normal", processors // threads, threads, MemoryProfile(normal_model))
    ctx = ctx_of(nodes, [replace(low, current={"node-1": 1}), normal])
    result = plan(ctx)
    check_invariants(ctx, result)
    assert result.placements["normal"].allocations == {"node-1": processors // threads}
    assert result.placements["low"].allocations == {}
    assert result.placements["low"].reason.startswith("not enough memory on any node")
    # A smaller low unit still fits next to it, although every processor is taken.
    room = memory - estimate_memory_bytes(normal.memory, processors // threads)
    if room >= BASE_MEMORY_BYTES + 2 * 1_000_000:
        tiny = replace(low, memory=MemoryProfile((room - BASE_MEMORY_BYTES) // 2))
        kept = plan(ctx_of(nodes, [replace(tiny, current={"node-1": 1}), normal]))
        assert kept.placements["low"].allocations == {"node-1": 1}


# ---------------------------------------------------------------- examples


def model(mib: int, **kw: int) -> MemoryProfile:
    return MemoryProfile(model_bytes=mib * MIB, **kw)


def test_memory_estimate_follows_elasticsearch() -> None:
    assert estimate_memory_bytes(model(100), 0) == 0
    assert estimate_memory_bytes(model(100), 3) == BASE_MEMORY_BYTES + 200 * MIB
    per = model(100, per_deployment_memory_bytes=500 * MIB, per_allocation_memory_bytes=50 * MIB)
    assert estimate_memory_bytes(per, 1) == 650 * MIB  # max(440 MiB, 500 + 50 + 100 MiB)
    assert estimate_memory_bytes(per, 4) == 800 * MIB
    small = model(100, per_deployment_memory_bytes=1, per_allocation_memory_bytes=1)
    assert estimate_memory_bytes(small, 2) == BASE_MEMORY_BYTES + 200 * MIB
    cached = MemoryProfile(model_bytes=100 * MIB, cache_size_bytes=300 * MIB)
    assert estimate_memory_bytes(cached, 1) == BASE_MEMORY_BYTES + 200 * MIB + 200 * MIB
    small_cache = MemoryProfile(model_bytes=100 * MIB, cache_size_bytes=10 * MIB)
    assert estimate_memory_bytes(small_cache, 1) == BASE_MEMORY_BYTES + 200 * MIB


def test_lost_node_allocations_move_to_the_other_node() -> None:
    nodes = [NodeCapacity("node-1", 8, 8 * GIB), NodeCapacity("node-2", 8, 8 * GIB, schedulable=False)]
    request = PlacementRequest("dep/v1", 4, 2, model(100), current={"node-1": 2, "node-2": 2})
    ctx = ctx_of(nodes, [request])
    result = plan(ctx)
    assert result.placements["dep/v1"].allocations == {"node-1": 4}
    assert result.placements["dep/v1"].reason == ""
    assert result.changed_units(ctx) == ["dep/v1"]
    # A node that vanished from the context is treated the same way.
    gone = plan(ctx_of(nodes[:1], [request]))
    assert gone.placements["dep/v1"].allocations == {"node-1": 4}


def test_target_shrink_removes_the_smallest_assignments_first() -> None:
    nodes = [NodeCapacity(f"node-{i}", 16, 16 * GIB) for i in (1, 2, 3)]
    current = {"node-1": 1, "node-2": 3, "node-3": 2}
    shrink_to = {6: current, 5: {"node-2": 3, "node-3": 2}, 4: {"node-2": 3, "node-3": 1}, 3: {"node-2": 3}}
    for target, expected in shrink_to.items():
        request = PlacementRequest("dep/v1", target, 1, model(10), current=current)
        assert plan(ctx_of(nodes, [request])).placements["dep/v1"].allocations == expected, target


def test_existing_unit_keeps_its_place_against_a_bigger_new_unit() -> None:
    nodes = [NodeCapacity("node-1", 4, 8 * GIB)]
    old = PlacementRequest("b-old", 2, 2, model(10), current={"node-1": 2})
    new = PlacementRequest("a-new", 8, 4, model(10))
    result = plan(ctx_of(nodes, [new, old]))
    assert result.placements["b-old"].allocations == {"node-1": 2}
    assert result.placements["a-new"].allocations == {}
    assert result.placements["a-new"].unplaced == 8
    assert result.placements["a-new"].reason == (
        "not enough processors: needs 4 threads per allocation, largest free is 0 on node-1"
    )


def test_new_allocations_prefer_nodes_already_hosting_the_unit() -> None:
    nodes = [NodeCapacity("node-1", 8, 8 * GIB), NodeCapacity("node-2", 4, 8 * GIB)]
    result = plan(ctx_of(nodes, [PlacementRequest("dep/v1", 3, 2, model(10))]))
    assert result.placements["dep/v1"].allocations == {"node-1": 3}  # most free processors, then packed
    spread = PlacementRequest("dep/v1", 3, 2, model(10), max_allocations_per_node=2)
    assert plan(ctx_of(nodes, [spread])).placements["dep/v1"].allocations == {"node-1": 2, "node-2": 1}


def test_reasons_name_the_missing_resource() -> None:
    nodes = [NodeCapacity("node-1", 4, 8 * GIB), NodeCapacity("node-2", 1, 8 * GIB)]
    busy = PlacementRequest("busy", 1, 4, model(10))
    wide = PlacementRequest("wide", 1, 2, model(10))
    result = plan(ctx_of(nodes, [busy, wide]))
    assert result.placements["wide"].reason == (
        "not enough processors: needs 2 threads per allocation, largest free is 1 on node-2"
    )
    tight = [NodeCapacity("node-1", 4, 200 * MIB)]
    big = plan(ctx_of(tight, [PlacementRequest("big", 1, 1, model(32))])).placements["big"]
    assert big.reason.startswith("not enough memory on any node: needs 304.0 MiB")
    assert big.unplaced == 1
    gpu = plan(ctx_of(nodes, [PlacementRequest("gpu", 2, 1, model(10), pool="gpu")])).placements["gpu"]
    assert gpu.reason == "no schedulable node in pool 'gpu'"
    lost = [NodeCapacity("node-1", 4, 8 * GIB, schedulable=False)]
    shared = plan(ctx_of(lost, [PlacementRequest("x", 1, 1, model(10))])).placements["x"]
    assert shared.reason == "no schedulable node in the shared pool"
    capped = PlacementRequest("cap", 3, 1, model(10), max_allocations_per_node=1)
    partial = plan(ctx_of(nodes, [capped])).placements["cap"]
    assert partial.allocations == {"node-1": 1, "node-2": 1}
    assert partial.unplaced == 1
    assert partial.reason.startswith("max_allocations_per_node=1 reached")


def test_pools_are_honoured() -> None:
    nodes = [NodeCapacity("cpu-1", 8, 8 * GIB), NodeCapacity("gpu-1", 8, 8 * GIB, pool="gpu")]
    result = plan(
        ctx_of(
            nodes,
            [PlacementRequest("g", 2, 1, model(10), pool="gpu"), PlacementRequest("s", 2, 1, model(10))],
        )
    )
    assert result.placements["g"].allocations == {"gpu-1": 2}
    assert result.placements["s"].allocations == {"cpu-1": 2}


def test_low_priority_may_oversubscribe_processors_but_not_memory() -> None:
    nodes = [NodeCapacity("node-1", 2, 4 * GIB)]
    normal = PlacementRequest("normal", 1, 2, model(100))
    low = PlacementRequest("low", 5, 8, model(100), priority=Priority.LOW)  # treated as 1 x 1 thread
    result = plan(ctx_of(nodes, [normal, low]))
    assert result.placements["normal"].allocations == {"node-1": 1}
    assert result.placements["low"].allocations == {"node-1": 1}
    assert result.placements["low"].unplaced == 0
    too_big = PlacementRequest("low", 1, 1, model(2048), priority=Priority.LOW)
    evicted = plan(ctx_of(nodes, [normal, too_big])).placements["low"]
    assert evicted.allocations == {}
    assert evicted.reason.startswith("not enough memory on any node")


def test_normal_demand_evicts_a_low_unit_from_a_full_node() -> None:
    nodes = [NodeCapacity("node-1", 4, 2 * GIB)]
    low = PlacementRequest("low", 1, 1, model(400), priority=Priority.LOW)  # 1040 MiB
    first = plan(ctx_of(nodes, [low]))
    assert first.placements["low"].allocations == {"node-1": 1}
    normal = PlacementRequest("normal", 1, 1, model(500))  # 1240 MiB: both do not fit in 2 GiB
    ctx = ctx_of(nodes, [replace(low, current={"node-1": 1}), normal])
    second = plan(ctx)
    check_invariants(ctx, second)
    assert second.placements["normal"].allocations == {"node-1": 1}
    assert second.placements["low"].allocations == {}
    assert second.placements["low"].unplaced == 1
    assert second.placements["low"].reason.startswith("not enough memory on any node: needs 1040.0 MiB")
    assert second.changed_units(ctx) == ["low", "normal"]


def test_low_unit_keeps_its_node_when_memory_allows() -> None:
    nodes = [NodeCapacity("node-1", 4, 8 * GIB), NodeCapacity("node-2", 16, 8 * GIB)]
    low = PlacementRequest("low", 1, 1, model(100), priority=Priority.LOW, current={"node-1": 1})
    normal = PlacementRequest("normal", 4, 1, model(100), current={"node-1": 4})
    ctx = ctx_of(nodes, [low, normal])
    result = plan(ctx)
    assert result.placements["low"].allocations == {"node-1": 1}
    assert result.changed_units(ctx) == []


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValidationFailed):
        NodeCapacity("node-1", 0, GIB)
    with pytest.raises(ValidationFailed):
        PlacementRequest("u", -1, 1, model(1))
    with pytest.raises(ValidationFailed):
        PlacementRequest("u", 1, 0, model(1))
    with pytest.raises(ValidationFailed):
        plan(ctx_of([NodeCapacity("n", 1, GIB), NodeCapacity("n", 1, GIB)], []))
    with pytest.raises(ValidationFailed):
        plan(ctx_of([], [PlacementRequest("u", 1, 1, model(1)), PlacementRequest("u", 1, 1, model(1))]))


def test_zero_target_and_no_nodes() -> None:
    result = plan(ctx_of([], [PlacementRequest("u", 0, 1, model(1), current={"node-9": 2})]))
    assert result.placements["u"] == Placement("u", {}, 0, "")
