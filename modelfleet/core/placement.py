"""Placement of model allocations on worker nodes (a simplified Elasticsearch assignment planner).

A deployment unit asks for N allocations of `threads_per_allocation` threads each. The allocations of
one unit on one node share one copy of the model in memory (`estimate_memory_bytes`).

`plan()` works in four passes, each over units in a deterministic order:

1. keep the existing NORMAL placements that still fit (after dropping lost/unknown/out-of-pool nodes,
   capping at `max_allocations_per_node` and shrinking to the target, smallest assignments first);
2. place the missing NORMAL allocations (largest threads x remaining first);
3. keep the existing LOW placements that fit in the memory the normal plan left;
4. place the missing LOW allocations.

Normal units never oversubscribe a node's processors; low units count for memory only. Nothing ever
oversubscribes memory. The module is pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from modelfleet.core.errors import ValidationFailed

MIB = 1024 * 1024
BASE_MEMORY_BYTES = 240 * MIB


class Priority(StrEnum):
    NORMAL = "normal"
    LOW = "low"


@dataclass(frozen=True)
class NodeCapacity:
    node_id: str
    processors: int  # >= 1
    memory_bytes: int  # memory available for models
    pool: str | None = None  # named node pool; None = the shared pool
    schedulable: bool = True  # False: lost/draining; nothing new goes there, existing allocations drop

    def __post_init__(self) -> None:
        if self.processors < 1:
            raise ValidationFailed(f"node {self.node_id}: processors must be >= 1", "processors")
        if self.memory_bytes < 0:
            raise ValidationFailed(f"node {self.node_id}: memory_bytes must be >= 0", "memory_bytes")


@dataclass(frozen=True)
class MemoryProfile:
    model_bytes: int
    per_deployment_memory_bytes: int = 0
    per_allocation_memory_bytes: int = 0
    cache_size_bytes: int | None = None  # None = model_bytes (the default cache size)

    def __post_init__(self) -> None:
        sizes = (self.model_bytes, self.per_deployment_memory_bytes, self.per_allocation_memory_bytes)
        if min(sizes) < 0 or (self.cache_size_bytes is not None and self.cache_size_bytes < 0):
            raise ValidationFailed("memory sizes must be >= 0", "memory")


@dataclass(frozen=True)
class PlacementRequest:
    unit_id: str  # e.g. "<deployment uid>/<version id>"
    target_allocations: int  # >= 0; a LOW unit is treated as min(target, 1)
    threads_per_allocation: int  # >= 1; a LOW unit is treated as 1
    memory: MemoryProfile
    priority: Priority = Priority.NORMAL
    current: Mapping[str, int] = field(default_factory=dict)  # node_id -> allocations placed now
    pool: str | None = None  # only nodes of this pool (None = nodes whose pool is None)
    max_allocations_per_node: int | None = None  # optional spread limit, >= 1

    def __post_init__(self) -> None:
        if self.target_allocations < 0:
            raise ValidationFailed(f"unit {self.unit_id}: target_allocations must be >= 0", "target")
        if self.threads_per_allocation < 1:
            raise ValidationFailed(f"unit {self.unit_id}: threads_per_allocation must be >= 1", "threads")
        if self.max_allocations_per_node is not None and self.max_allocations_per_node < 1:
            raise ValidationFailed(f"unit {self.unit_id}: max_allocations_per_node must be >= 1", "max")
        if any(count < 0 for count in self.current.values()):
            raise ValidationFailed(f"unit {self.unit_id}: current allocations must be >= 0", "current")

    @property
    def effective_target(self) -> int:
        return min(self.target_allocations, 1) if self.priority is Priority.LOW else self.target_allocations

    @property
    def effective_threads(self) -> int:
        return 1 if self.priority is Priority.LOW else self.threads_per_allocation


@dataclass(frozen=True)
class PlacementContext:
    now: datetime
    nodes: Sequence[NodeCapacity]
    requests: Sequence[PlacementRequest]


@dataclass(frozen=True)
class Placement:
    unit_id: str
    allocations: Mapping[str, int]  # node_id -> allocations (only > 0 entries, sorted by node_id)
    unplaced: int  # effective target - sum(allocations)
    reason: str  # "" when fully placed; else why the rest could not be placed


@dataclass(frozen=True)
class PlacementPlan:
    placements: Mapping[str, Placement]

    def changed_units(self, ctx: PlacementContext) -> list[str]:
        """Units (in request order) whose planned allocations differ from their `current`."""
        changed = []
        for request in ctx.requests:
            current = {node: count for node, count in request.current.items() if count > 0}
            placement = self.placements.get(request.unit_id)
            planned = dict(placement.allocations) if placement is not None else {}
            if planned != current:
                changed.append(request.unit_id)
        return changed


def estimate_memory_bytes(profile: MemoryProfile, allocations: int) -> int:
    """Memory one node needs for `allocations` allocations of one unit (Elasticsearch's estimate)."""
    if allocations < 0:
        raise ValidationFailed("allocations must be >= 0", "allocations")
    if allocations == 0:
        return 0
    base = BASE_MEMORY_BYTES + 2 * profile.model_bytes
    if profile.per_deployment_memory_bytes == 0 and profile.per_allocation_memory_bytes == 0:
        estimate = base
    else:
        explicit = (
            profile.per_deployment_memory_bytes
            + profile.per_allocation_memory_bytes * allocations
            + profile.model_bytes
        )
        estimate = max(base, explicit)
    if profile.cache_size_bytes is not None and profile.cache_size_bytes > profile.model_bytes:
        estimate += profile.cache_size_bytes - profile.model_bytes
    return estimate


def _mib(size: int) -> str:
    return f"{size / MIB:.1f} MiB"


def _pool_label(pool: str | None) -> str:
    return "the shared pool" if pool is None else f"pool '{pool}'"


class _Ledger:
    """Mutable bookkeeping of one planning run (private; never escapes `plan`)."""

    def __init__(self, nodes: Sequence[NodeCapacity]) -> None:
        self.nodes = sorted(nodes, key=lambda n: n.node_id)
        self.normal_threads = {n.node_id: 0 for n in self.nodes}
        self.all_threads = {n.node_id: 0 for n in self.nodes}
        self.memory = {n.node_id: 0 for n in self.nodes}
        self.counts: dict[str, dict[str, int]] = {}

    def count(self, unit_id: str, node_id: str) -> int:
        return self.counts.get(unit_id, {}).get(node_id, 0)

    def placed(self, unit_id: str) -> int:
        return sum(self.counts.get(unit_id, {}).values())

    def free_processors(self, node: NodeCapacity, request: PlacementRequest) -> int:
        # For NORMAL units only normal threads count (low units may oversubscribe); for LOW units
        # this is only used to rank nodes, so it counts every thread.
        used = self.normal_threads if request.priority is Priority.NORMAL else self.all_threads
        return node.processors - used[node.node_id]

    def free_memory(self, node: NodeCapacity) -> int:
        return node.memory_bytes - self.memory[node.node_id]

    def memory_increment(self, node: NodeCapacity, request: PlacementRequest, extra: int) -> int:
        have = self.count(request.unit_id, node.node_id)
        before = estimate_memory_bytes(request.memory, have)
        return estimate_memory_bytes(request.memory, have + extra) - before

    def fits(self, node: NodeCapacity, request: PlacementRequest, extra: int) -> bool:
        threads = extra * request.effective_threads
        if request.priority is Priority.NORMAL and self.free_processors(node, request) < threads:
            return False
        return self.memory_increment(node, request, extra) <= self.free_memory(node)

    def add(self, node: NodeCapacity, request: PlacementRequest, extra: int) -> None:
        self.memory[node.node_id] += self.memory_increment(node, request, extra)
        threads = extra * request.effective_threads
        self.all_threads[node.node_id] += threads
        if request.priority is Priority.NORMAL:
            self.normal_threads[node.node_id] += threads
        unit = self.counts.setdefault(request.unit_id, {})
        unit[node.node_id] = unit.get(node.node_id, 0) + extra

    def in_pool(self, request: PlacementRequest) -> list[NodeCapacity]:
        return [n for n in self.nodes if n.schedulable and n.pool == request.pool]

    def open_nodes(self, request: PlacementRequest) -> list[NodeCapacity]:
        cap = request.max_allocations_per_node
        return [
            n for n in self.in_pool(request) if cap is None or self.count(request.unit_id, n.node_id) < cap
        ]


def _trimmed_current(request: PlacementRequest, nodes: Mapping[str, NodeCapacity]) -> dict[str, int]:
    """`current` without lost/unknown/out-of-pool nodes, capped per node and shrunk to the target.

    When the target shrank, allocations go first from the nodes with the fewest allocations of the
    unit (whole small assignments are dropped first), ties by node_id.
    """
    cap = request.max_allocations_per_node
    kept: dict[str, int] = {}
    for node_id, count in request.current.items():
        node = nodes.get(node_id)
        if count <= 0 or node is None or not node.schedulable or node.pool != request.pool:
            continue
        kept[node_id] = count if cap is None else min(count, cap)
    excess = sum(kept.values()) - request.effective_target
    while excess > 0:
        node_id = min(kept, key=lambda n: (kept[n], n))
        removed = min(kept[node_id], excess)
        kept[node_id] -= removed
        excess -= removed
        if kept[node_id] == 0:
            del kept[node_id]
    return kept


def _keep_existing(ledger: _Ledger, request: PlacementRequest, current: Mapping[str, int]) -> None:
    nodes = {n.node_id: n for n in ledger.nodes}
    for node_id in sorted(current, key=lambda n: (-current[n], n)):
        node = nodes[node_id]
        keep = current[node_id]
        while keep > 0 and not ledger.fits(node, request, keep):
            keep -= 1
        if keep > 0:
            ledger.add(node, request, keep)


def _place_new(ledger: _Ledger, request: PlacementRequest) -> None:
    remaining = request.effective_target - ledger.placed(request.unit_id)
    while remaining > 0:
        candidates = [n for n in ledger.open_nodes(request) if ledger.fits(n, request, 1)]
        if not candidates:
            return
        best = min(
            candidates,
            key=lambda n: (
                ledger.count(request.unit_id, n.node_id) == 0,  # already hosting the unit first
                -ledger.free_processors(n, request),
                -ledger.free_memory(n),
                n.node_id,
            ),
        )
        ledger.add(best, request, 1)
        remaining -= 1


def _unplaced_reason(ledger: _Ledger, request: PlacementRequest) -> str:
    """Why one more allocation of `request` fits nowhere, given the ledger as it stands."""
    pool_nodes = ledger.in_pool(request)
    if not pool_nodes:
        return f"no schedulable node in {_pool_label(request.pool)}"
    open_nodes = ledger.open_nodes(request)
    if not open_nodes:
        return (
            f"max_allocations_per_node={request.max_allocations_per_node} reached on all "
            f"{len(pool_nodes)} schedulable node(s) in {_pool_label(request.pool)}"
        )
    threads = request.effective_threads
    with_cpu = open_nodes
    if request.priority is Priority.NORMAL:
        with_cpu = [n for n in open_nodes if ledger.free_processors(n, request) >= threads]
        if not with_cpu:
            roomiest = min(open_nodes, key=lambda n: (-ledger.free_processors(n, request), n.node_id))
            return (
                f"not enough processors: needs {threads} thread{'s' if threads > 1 else ''} per allocation, "
                f"largest free is "
                f"{ledger.free_processors(roomiest, request)} on {roomiest.node_id}"
            )
    need = min(ledger.memory_increment(n, request, 1) for n in with_cpu)
    roomiest = min(with_cpu, key=lambda n: (-ledger.free_memory(n), n.node_id))
    return (
        f"not enough memory on any node: needs {_mib(need)}, largest free is "
        f"{_mib(max(0, ledger.free_memory(roomiest)))} on {roomiest.node_id}"
    )


def _validate(ctx: PlacementContext) -> None:
    node_ids = [n.node_id for n in ctx.nodes]
    if len(set(node_ids)) != len(node_ids):
        raise ValidationFailed("duplicate node_id in placement context", "nodes")
    unit_ids = [r.unit_id for r in ctx.requests]
    if len(set(unit_ids)) != len(unit_ids):
        raise ValidationFailed("duplicate unit_id in placement context", "requests")


def plan(ctx: PlacementContext) -> PlacementPlan:
    """Place every request's allocations on the nodes; deterministic, minimal churn."""
    _validate(ctx)
    ledger = _Ledger(ctx.nodes)
    nodes = {n.node_id: n for n in ctx.nodes}
    reasons: dict[str, str] = {}
    for priority in (Priority.NORMAL, Priority.LOW):
        group = [r for r in ctx.requests if r.priority is priority]
        current = {r.unit_id: _trimmed_current(r, nodes) for r in group}
        # Keep first, biggest existing footprint first: a new unit never steals an existing place.
        for request in sorted(
            group, key=lambda r: (-r.effective_threads * sum(current[r.unit_id].values()), r.unit_id)
        ):
            _keep_existing(ledger, request, current[request.unit_id])
        for request in sorted(
            group,
            key=lambda r: (
                -r.effective_threads * (r.effective_target - ledger.placed(r.unit_id)),
                r.unit_id,
            ),
        ):
            _place_new(ledger, request)
        # Reasons are read at the end of the pass (resources only shrink during a pass), so that
        # re-planning an unchanged context gives exactly the same plan, reasons included.
        for request in group:
            if ledger.placed(request.unit_id) < request.effective_target:
                reasons[request.unit_id] = _unplaced_reason(ledger, request)

    placements: dict[str, Placement] = {}
    for request in ctx.requests:
        counts = ledger.counts.get(request.unit_id, {})
        allocations = {node_id: counts[node_id] for node_id in sorted(counts) if counts[node_id] > 0}
        placements[request.unit_id] = Placement(
            unit_id=request.unit_id,
            allocations=allocations,
            unplaced=request.effective_target - sum(allocations.values()),
            reason=reasons.get(request.unit_id, ""),
        )
    return PlacementPlan(placements=placements)
