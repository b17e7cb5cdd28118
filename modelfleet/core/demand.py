"""The workers' demand signal: how many processors the cloud deployments want, over how many the
live cloud nodes have. The cloud's worker service scales on it (1.0: exactly enough; 2.0: twice
the nodes are needed; 0.5: half would do). Pure: the caller reads the records and the clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

NO_NODES_RATIO = 1_000.0  # wanted processors and no node at all: "scale out", as a finite number


@dataclass(frozen=True)
class Want:
    """One version's wanted allocations x threads per allocation."""

    allocations: int
    threads_per_allocation: int


def processor_demand_ratio(wants: Iterable[Want], live_node_processors: Iterable[int]) -> float:
    """Processors wanted over processors available; 0 when nothing is wanted."""
    wanted = sum(max(0, w.allocations) * max(1, w.threads_per_allocation) for w in wants)
    available = sum(max(0, p) for p in live_node_processors)
    if wanted == 0:
        return 0.0
    if available == 0:
        return NO_NODES_RATIO
    return wanted / available
