"""Exact weighted choice: smooth weighted round robin (as nginx does), state in, state out.

Each pick adds every key's weight to its current value, picks the key with the largest current value
(ties: the smallest key) and subtracts the total weight from it. With constant weights starting from
an empty state, every full cycle of sum(weights) picks picks each key exactly `weight` times, spread
out smoothly (no key is ever ahead of its exact share by a whole pick).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WrrState:
    current: Mapping[str, int] = field(default_factory=dict)  # key -> current weight (empty initially)


def pick_weighted(weights: Mapping[str, int], state: WrrState) -> tuple[str | None, WrrState]:
    """Pick one key in proportion to its weight; keys with weight <= 0 are never picked.

    Keys of `state` no longer among the positive weights are dropped; new keys start at 0.
    Returns `(None, state)` unchanged when no key has a positive weight.
    """
    live = {key: weight for key, weight in weights.items() if weight > 0}
    if not live:
        return None, state
    total = sum(live.values())
    current = {key: state.current.get(key, 0) + weight for key, weight in sorted(live.items())}
    chosen = min(current, key=lambda key: (-current[key], key))
    current[chosen] -= total
    return chosen, WrrState(current=current)


def pick_route(allocations: Mapping[str, int], state: WrrState) -> tuple[str | None, WrrState]:
    """Pick a node, weighted by the allocations the unit has on it (alias of `pick_weighted`)."""
    return pick_weighted(allocations, state)
