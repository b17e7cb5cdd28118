"""A deployment version loaded on this node: one model copy shared by its allocations.

The allocations, queue and dynamic batching are the `Batcher`'s (see batcher.py); the counters
are the `DeploymentStats` reported with every heartbeat. Resizing changes the number of
allocation threads and the queue and batching settings, never reloading the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy.typing as npt

from modelfleet.core.placement import Priority
from modelfleet.runtime.backends import LoadedModel, load_model
from modelfleet.worker.batcher import (
    Arrays,
    Batcher,
    BatchSettings,
    DeploymentUnloaded,
    InferenceTimeout,
    Outcome,
    QueueFull,
)
from modelfleet.worker.stats import DeploymentStats
from schemas.nodes import Assignment
from schemas.stats import InferenceStats
from schemas.tensors import Signature

__all__ = ["DeploymentUnloaded", "InferenceTimeout", "LoadedDeployment", "QueueFull"]


if TYPE_CHECKING:
    from modelfleet.worker.text import TextServing


def batch_settings(assignment: Assignment) -> BatchSettings:
    return BatchSettings(
        max_batch_size=max(1, assignment.max_batch_size),
        max_batch_delay_ms=max(0.0, assignment.max_batch_delay_ms),
    )


class LoadedDeployment:
    def __init__(
        self, assignment: Assignment, model: LoadedModel, stats: DeploymentStats | None = None
    ) -> None:
        self.assignment = assignment
        self.model = model
        self.signature: Signature = model.signature
        self.stats = stats or DeploymentStats()
        self.text: TextServing | None = None  # set after loading when the model runs a text task
        self._batcher = Batcher(
            model,
            allocations=assignment.target_allocations,
            queue_capacity=assignment.queue_capacity,
            settings=batch_settings(assignment),
            low_priority=assignment.priority == Priority.LOW,
            stats=self.stats,
            name=f"alloc-{assignment.deployment_id}-{assignment.version_id}",
        )

    @classmethod
    def load(cls, assignment: Assignment, entry: Path) -> LoadedDeployment:
        model = load_model(
            assignment.model.format.value,
            entry,
            assignment.model.signature,
            assignment.threads_per_allocation,
        )
        return cls(assignment, model)

    @property
    def allocations(self) -> int:
        return self._batcher.allocations

    @property
    def batching(self) -> bool:
        """Whether requests are batched (the settings ask for it and the model allows it)."""
        return self._batcher.batching

    @property
    def pending(self) -> int:
        return self._batcher.pending

    def resize(self, assignment: Assignment) -> None:
        """New allocation count, queue capacity, batching or priority, keeping the loaded model."""
        self.assignment = assignment
        self._batcher.configure(
            assignment.target_allocations,
            assignment.queue_capacity,
            batch_settings(assignment),
            assignment.priority == Priority.LOW,
        )

    def submit(self, inputs: Arrays, done: Callable[[Outcome], None], deadline: float = math.inf) -> None:
        """Queue a request; `done` gets its outputs or exception once, on an allocation thread.
        `deadline` is on `time.monotonic()`. Raises QueueFull or DeploymentUnloaded at once."""
        self._batcher.submit(inputs, done, deadline=deadline)

    def run_inline(self, inputs: Arrays, deadline: float = math.inf) -> Outcome | None:
        """Run now on this thread if an allocation is idle and nothing waits (see Batcher.run_inline);
        None: `submit` it instead."""
        return self._batcher.run_inline(inputs, deadline)

    async def run(self, inputs: Arrays, deadline: float = math.inf) -> dict[str, npt.NDArray[Any]]:
        return await self._batcher.run(inputs, deadline)

    def stats_snapshot(self) -> InferenceStats:
        return self.stats.snapshot(pending=self._batcher.pending)

    def close(self) -> None:
        self._batcher.close()
        self.model.close()
