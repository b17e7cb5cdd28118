"""A deployment version loaded on this node: one model copy shared by its allocations.

Allocations are executor threads over the one loaded model (ONNX Runtime's `run` is
thread-safe), each running with `threads_per_allocation` intra-op threads. Requests beyond the
running ones wait in a bounded queue of `queue_capacity`; past it the node answers 429.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet.runtime.backends import LoadedModel, load_model
from schemas.nodes import Assignment
from schemas.tensors import Signature


class QueueFull(Exception):
    pass


class LoadedDeployment:
    def __init__(self, assignment: Assignment, model: LoadedModel) -> None:
        self.assignment = assignment
        self.model = model
        self.signature: Signature = model.signature
        self._allocations = max(1, assignment.target_allocations)
        self._executor = ThreadPoolExecutor(max_workers=self._allocations, thread_name_prefix="alloc")
        self._pending = 0
        self._lock = threading.Lock()

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
        return self._allocations

    def resize(self, assignment: Assignment) -> None:
        """New allocation count or queue capacity, keeping the loaded model."""
        self.assignment = assignment
        wanted = max(1, assignment.target_allocations)
        if wanted != self._allocations:
            old = self._executor
            self._executor = ThreadPoolExecutor(max_workers=wanted, thread_name_prefix="alloc")
            self._allocations = wanted
            old.shutdown(wait=False)

    async def run(self, inputs: dict[str, npt.NDArray[Any]]) -> dict[str, np.ndarray]:
        capacity = self.assignment.queue_capacity + self._allocations
        with self._lock:
            if self._pending >= capacity:
                raise QueueFull(
                    f"inference queue is full ({self.assignment.queue_capacity} waiting); retry later"
                )
            self._pending += 1
        try:
            future = self._executor.submit(self.model.run, inputs)
            return await asyncio.wrap_future(future)
        finally:
            with self._lock:
                self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.model.close()
