"""Which execution starts next on a deployment: pure bookkeeping, no threads and no clock.

`Queue` mode runs one execution at a time in arrival order. An execution that fails is retried
once, as the seed puts it: "if a deployment fails, the next one will start and then directly
after, the failed one will be retried before any other task". So after `a b✗ c d` the order is
`a b c b d`: the retry goes right behind the next waiting execution (at the front when nothing
waits). `Parallel` mode runs up to N at once and does not retry.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # final: the record becomes Failed
    RETRYING = "retrying"  # queued again, at the front


@dataclass(frozen=True)
class Start:
    execution_id: str
    attempt: int  # 1 for the first run, 2 for the retry


@dataclass
class ExecutionQueue:
    capacity: int = 1
    retry_failed: bool = True  # Queue mode; Parallel mode passes False
    max_attempts: int = 2
    _waiting: deque[Start] = field(default_factory=deque)
    _running: dict[str, int] = field(default_factory=dict)

    @classmethod
    def for_mode(cls, parallel: bool, max_parallel: int) -> ExecutionQueue:
        if parallel:
            return cls(capacity=max(1, max_parallel), retry_failed=False)
        return cls(capacity=1, retry_failed=True)

    def enqueue(self, execution_id: str) -> None:
        self._waiting.append(Start(execution_id, 1))

    def to_start(self) -> list[Start]:
        """The executions to start now (they count as running from here on)."""
        started: list[Start] = []
        while self._waiting and len(self._running) < self.capacity:
            s = self._waiting.popleft()
            self._running[s.execution_id] = s.attempt
            started.append(s)
        return started

    def finished(self, execution_id: str, ok: bool, retryable: bool = True) -> Outcome:
        attempt = self._running.pop(execution_id, 1)
        if ok:
            return Outcome.SUCCEEDED
        if self.retry_failed and retryable and attempt < self.max_attempts:
            self._waiting.insert(min(1, len(self._waiting)), Start(execution_id, attempt + 1))
            return Outcome.RETRYING
        return Outcome.FAILED

    def running(self) -> list[str]:
        return list(self._running)

    def waiting(self) -> list[str]:
        return [s.execution_id for s in self._waiting]

    def drop_waiting(self) -> list[str]:
        """Everything not yet started (the deployment went away); the caller fails them."""
        dropped = [s.execution_id for s in self._waiting]
        self._waiting.clear()
        return dropped

    @property
    def idle(self) -> bool:
        return not self._waiting and not self._running
