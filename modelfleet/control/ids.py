"""Identifier generation (randomness lives at the edge, with the clock)."""

from __future__ import annotations

import itertools
import secrets
import threading
import time
import uuid
from datetime import datetime

_sequence = itertools.count()
_lock = threading.Lock()
_last_ms = 0
_process = secrets.token_hex(2)


def new_uid() -> str:
    return uuid.uuid4().hex


def new_model_id() -> str:
    return str(uuid.uuid4())


def event_id(now: datetime) -> str:
    """Time-ordered: sorts by creation time, and by creation order within one process (events
    of one change often share a millisecond). The process tag keeps ids unique across processes.

    `now` is the caller's logical time, read when its work began; a task that began earlier (a
    sweep re-planning what a request just created) would otherwise stamp a later event with an
    earlier time. So the stamp never goes below the wall clock or the last id of this process."""
    global _last_ms
    with _lock:
        ms = max(int(now.timestamp() * 1000), int(time.time() * 1000), _last_ms)
        _last_ms = ms
        return f"{ms:013d}-{next(_sequence):010d}-{_process}"
