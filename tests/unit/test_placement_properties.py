"""More planner properties: memory by Elasticsearch's formula, added nodes, maximality, spreading, eviction.

`test_placement.py` covers capacity, zero churn on replanning, new units and low/normal isolation;
these add what the `_ml` face relies on besides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.core.placement import (
    MIB,
    MemoryProfile,
    NodeCapacity,
    PlacementContext,
    PlacementPlan,
    PlacementRequest,
    Priority,
    estimate_memory_bytes,
    plan,
)
from tests.unit.test_placement import (
    POOLS,
    any_contexts,
    check_invariants,
    ctx_of,
    fresh_contexts,
    requests_for,
    with_current,
)

GIB = 1024 * MIB
PROPS = settings(max_examples=80, deadline=None, database=None)


def reference_memory(profile: MemoryProfile, allocations: int) -> int:
    """Elasticsearch's `estimateMemoryUsageBytes`, written out from its description."""
    if allocations == 0:
        return 0
    twice_the_model = 240 * MIB + 2 * profile.model_bytes
    if profile.per_deployment_memory_bytes == 0 and profile.per_allocation_memory_bytes == 0:
        estimate = twice_the_model
    else:
        linear = (
            profile.per_deployment_memory_bytes
            + profile.per_allocation_memory_bytes * allocations
            + profile.model_bytes
        )
        estimate = max(twice_the_model, linear)
    cache = profile.cache_size_bytes
    if cache is not None and cache > profile.model_bytes:
        estimate += cache - profile.model_bytes
    return estimate


def usage(
    ctx: PlacementContext, p: PlacementPlan, priorities: Sequence[Priority] = (Priority.NORMAL, Priority.LOW)
) -> tuple[dict[str, int], dict[str, int]]:
    """Threads and memory per node, of the units of the given priorities, by the reference formula."""
    threads = {n.node_id: 0 for n in ctx.nodes}
    memory = {n.node_id: 0 for n in ctx.nodes}
    for r in ctx.requests:
        if r.priority not in priorities:
            continue
        for node_id, count in p.placements[r.unit_id].allocations.items():
            threads[node_id] += count * (1 if r.priority is Priority.LOW else r.threads_per_allocation)
            memory[node_id] += reference_memory(r.memory, count)
    return threads, memory


# ---------------------------------------------------------------- memory and processors


profiles = st.builds(
    MemoryProfile,
    model_bytes=st.integers(min_value=0, max_value=4 * GIB),
    per_deployment_memory_bytes=st.sampled_from([0, 0, 1, 300 * MIB, 2 * GIB]),
    per_allocation_memory_bytes=st.sampled_from([0, 0, 1, 50 * MIB, 700 * MIB]),
    cache_size_bytes=st.one_of(st.none(), st.integers(min_value=0, max_value=8 * GIB)),
)


@PROPS
@given(profile=profiles, allocations=st.integers(min_value=0, max_value=64))
def test_memory_estimate_is_elasticsearchs_formula(profile: MemoryProfile, allocations: int) -> None:
    assert estimate_memory_bytes(profile, allocations) == reference_memory(profile, allocations)


@PROPS
@given(ctx=any_contexts)
def test_normal_never_oversubscribes_processors_and_nothing_exceeds_memory(ctx: PlacementContext) -> None:
    p = plan(ctx)
    normal_threads, _ = usage(ctx, p, (Priority.NORMAL,))
    _, memory = usage(ctx, p)
    for node in ctx.nodes:
        assert normal_threads[node.node_id] <= node.processors
        assert memory[node.node_id] <= node.memory_bytes
    for r in ctx.requests:
        placed = p.placements[r.unit_id].allocations
        if r.priority is Priority.LOW:  # placed 1 x 1, whatever was asked
            assert sum(placed.values()) <= 1


@PROPS
@given(ctx=any_contexts)
def test_an_unplaced_allocation_fits_nowhere(ctx: PlacementContext) -> None:
    """Maximality: normal units fill every node they fit (counting normal units only, since low
    ones are evicted for them); a low unit is only ever kept out by memory, never by processors."""
    p = plan(ctx)
    normal_threads, normal_memory = usage(ctx, p, (Priority.NORMAL,))
    _, all_memory = usage(ctx, p)
    for r in ctx.requests:
        placement = p.placements[r.unit_id]
        if placement.unplaced == 0:
            continue
        for node in ctx.nodes:
            if not node.schedulable or node.pool != r.pool:
                continue
            have = placement.allocations.get(node.node_id, 0)
            if r.max_allocations_per_node is not None and have >= r.max_allocations_per_node:
                continue
            extra_memory = reference_memory(r.memory, have + 1) - reference_memory(r.memory, have)
            if r.priority is Priority.NORMAL:
                cpu_full = normal_threads[node.node_id] + r.threads_per_allocation > node.processors
                memory_full = normal_memory[node.node_id] + extra_memory > node.memory_bytes
                assert cpu_full or memory_full, (r.unit_id, node.node_id)
            else:
                assert all_memory[node.node_id] + extra_memory > node.memory_bytes, (r.unit_id, node.node_id)


@PROPS
@given(processors=st.integers(min_value=1, max_value=16), data=st.data())
def test_low_priority_may_oversubscribe_processors(processors: int, data: st.DataObject) -> None:
    threads = data.draw(st.sampled_from([t for t in (1, 2, 4, 8, 16) if processors % t == 0]))
    nodes = [NodeCapacity("node-1", processors, 16 * GIB)]
    busy = PlacementRequest("busy", processors // threads, threads, MemoryProfile(10 * MIB))
    asked = data.draw(st.integers(min_value=1, max_value=8))
    asked_threads = data.draw(st.sampled_from([1, 4, 32]))
    low = PlacementRequest("low", asked, asked_threads, MemoryProfile(10 * MIB), Priority.LOW)
    ctx = ctx_of(nodes, [low, busy])
    p = plan(ctx)
    check_invariants(ctx, p)
    assert p.placements["busy"].allocations == {"node-1": processors // threads}  # every processor
    assert p.placements["low"].allocations == {"node-1": 1}  # 1 allocation of 1 thread, on top
    assert p.placements["low"].unplaced == 0
    all_threads, _ = usage(ctx, p)
    assert all_threads["node-1"] == processors + 1


# ---------------------------------------------------------------- stability


@PROPS
@given(ctx=any_contexts, data=st.data())
def test_adding_a_node_never_moves_existing_allocations(ctx: PlacementContext, data: st.DataObject) -> None:
    first = plan(ctx)
    current = with_current(ctx, first)
    newcomer = NodeCapacity(
        node_id=data.draw(st.sampled_from(["a-new", "node-new", "z-new"])),
        processors=data.draw(st.integers(min_value=1, max_value=16)),
        memory_bytes=data.draw(st.integers(min_value=512 * MIB, max_value=16 * GIB)),
        pool=data.draw(st.sampled_from(POOLS)),
    )
    grown = ctx_of([*current.nodes, newcomer], current.requests)
    second = plan(grown)
    check_invariants(grown, second)
    for r in ctx.requests:
        before, after = first.placements[r.unit_id], second.placements[r.unit_id]
        on_old_nodes = {n: c for n, c in after.allocations.items() if n != newcomer.node_id}
        assert on_old_nodes == dict(before.allocations), r.unit_id
        assert after.unplaced <= before.unplaced
    # And planning the grown context again changes nothing more.
    assert plan(with_current(grown, second)) == second


@PROPS
@given(ctx=fresh_contexts(), data=st.data())
def test_low_units_are_evicted_only_for_normal_memory(ctx: PlacementContext, data: st.DataObject) -> None:
    first = plan(ctx)
    current = with_current(ctx, first)
    node_ids = [n.node_id for n in ctx.nodes]
    # Normal demand grows: a new normal unit, and maybe more allocations for existing ones.
    newcomer = replace(
        data.draw(requests_for("unit-new", node_ids, random_current=False)), priority=Priority.NORMAL
    )
    requests = [
        replace(r, target_allocations=r.target_allocations + data.draw(st.integers(min_value=0, max_value=3)))
        if r.priority is Priority.NORMAL
        else r
        for r in current.requests
    ]
    grown = ctx_of(current.nodes, [*requests, newcomer])
    second = plan(grown)
    check_invariants(grown, second)
    _, normal_before = usage(current, first, (Priority.NORMAL,))
    _, normal_after = usage(grown, second, (Priority.NORMAL,))
    for r in ctx.requests:
        if r.priority is not Priority.LOW:
            continue
        for node_id in first.placements[r.unit_id].allocations:
            if node_id not in second.placements[r.unit_id].allocations:
                assert normal_after[node_id] > normal_before[node_id], (r.unit_id, node_id)


# ---------------------------------------------------------------- spreading


@PROPS
@given(
    processors=st.lists(st.integers(min_value=1, max_value=16), min_size=1, max_size=6),
    threads=st.sampled_from([1, 2, 4]),
    data=st.data(),
)
def test_allocations_spread_across_nodes_when_one_cannot_hold_them(
    processors: list[int], threads: int, data: st.DataObject
) -> None:
    nodes = [NodeCapacity(f"node-{i}", p, 64 * GIB) for i, p in enumerate(processors)]
    per_node = [p // threads for p in processors]
    capacity = sum(per_node)
    target = data.draw(st.integers(min_value=1, max_value=max(1, capacity + 3)))
    ctx = ctx_of(nodes, [PlacementRequest("dep/v1", target, threads, MemoryProfile(100 * MIB))])
    result = plan(ctx)
    check_invariants(ctx, result)
    placement = result.placements["dep/v1"]
    placed = min(target, capacity)
    assert sum(placement.allocations.values()) == placed  # everything that fits is placed
    biggest = max(per_node)
    if placed > biggest:  # no node holds them all: spread over as few nodes as that takes, or more
        assert len(placement.allocations) >= -(-placed // biggest) >= 2


def test_four_allocations_on_two_two_processor_nodes_spread() -> None:
    nodes = [NodeCapacity("node-1", 2, 8 * GIB), NodeCapacity("node-2", 2, 8 * GIB)]
    request = PlacementRequest("dep/v1", 4, 1, MemoryProfile(50 * MIB))
    placement = plan(ctx_of(nodes, [request])).placements["dep/v1"]
    assert placement.allocations == {"node-1": 2, "node-2": 2}
    assert placement.unplaced == 0


def _allocations(p: PlacementPlan) -> Mapping[str, Mapping[str, int]]:
    return {unit: placement.allocations for unit, placement in p.placements.items()}


@PROPS
@given(ctx=any_contexts)
def test_replanning_an_unchanged_context_changes_nothing(ctx: PlacementContext) -> None:
    first = plan(ctx)
    settled = with_current(ctx, first)
    assert _allocations(plan(settled)) == _allocations(first)
    assert plan(settled).changed_units(settled) == []
