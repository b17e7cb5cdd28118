"""Child processes of the local platform die with it, even after a kill -9 of the parent.

A thread polls getppid(): when the parent is gone the process has been re-parented, and it
runs `on_parent_death` (by default: send itself SIGTERM, so its normal shutdown runs).
PR_SET_PDEATHSIG is not used: Linux fires it when the *thread* that spawned the child exits,
which the platform's start-up and supervisor threads do.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def exit_with_parent(
    on_parent_death: Callable[[], None] = _terminate_self, poll_seconds: float = 0.25
) -> None:
    parent = os.getppid()

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(poll_seconds):
            if os.getppid() != parent:
                on_parent_death()
                return

    threading.Thread(target=watch, name="lifeline", daemon=True).start()
