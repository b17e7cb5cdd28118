"""Identifier generation (randomness lives at the edge, with the clock)."""

from __future__ import annotations

import itertools
import secrets
import uuid
from datetime import datetime

_sequence = itertools.count()
_process = secrets.token_hex(2)


def new_uid() -> str:
    return uuid.uuid4().hex


def new_model_id() -> str:
    return str(uuid.uuid4())


def event_id(now: datetime) -> str:
    """Time-ordered: sorts by creation time, and by creation order within one process (events
    of one change often share a millisecond). The process tag keeps ids unique across processes."""
    return f"{int(now.timestamp() * 1000):013d}-{next(_sequence):010d}-{_process}"
