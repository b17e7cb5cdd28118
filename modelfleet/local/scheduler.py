"""The local platform's scheduler. moto's EventBridge Scheduler never fires, so the local
platform calls the scheduled handler itself, with the same events the cloud's schedules send."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    event: dict[str, Any]
    every_seconds: float


class LocalScheduler:
    def __init__(self, handler: Callable[[dict[str, Any], Any], Any], jobs: list[Job]) -> None:
        self._handler = handler
        self._jobs = jobs
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="local-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        due = {i: time.monotonic() + job.every_seconds for i, job in enumerate(self._jobs)}
        while not self._stop.is_set():
            now = time.monotonic()
            for i, job in enumerate(self._jobs):
                if now >= due[i]:
                    due[i] = now + job.every_seconds
                    try:
                        self._handler(job.event, None)
                    except Exception:
                        log.exception("scheduled task %s failed", job.event)
            self._stop.wait(max(0.05, min(due.values()) - time.monotonic()))
