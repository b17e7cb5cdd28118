"""How the CLI answers: rich tables for people, `--json` for scripts, and exit codes that say
what went wrong (a script branches on them without parsing messages)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import IntEnum
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from modelfleet.sdk import errors


class Exit(IntEnum):
    OK = 0
    ERROR = 1  # anything else, including the platform's 5xx
    USAGE = 2  # bad arguments, an invalid spec or request body (400)
    NOT_FOUND = 3
    AUTH = 4  # missing, invalid, expired key (401) or a missing role (403)
    CONFLICT = 5
    FAILED = 6  # a deployment went to `failed` while waiting
    TIMEOUT = 7  # a wait ran out of time
    UNREACHABLE = 8  # the endpoint could not be reached
    BUSY = 9  # 429: the deployment's queue is full; retry later


def exit_code(e: BaseException) -> Exit:
    match e:
        case errors.NotFound():
            return Exit.NOT_FOUND
        case errors.Unauthorized() | errors.Forbidden():
            return Exit.AUTH
        case errors.Conflict():
            return Exit.CONFLICT
        case errors.BadRequest() | errors.PayloadTooLarge():
            return Exit.USAGE
        case errors.TooManyRequests():
            return Exit.BUSY
        case errors.DeploymentFailed():
            return Exit.FAILED
        case errors.WaitTimeout():
            return Exit.TIMEOUT
        case errors.ConnectionFailed():
            return Exit.UNREACHABLE
    return Exit.ERROR


out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def plain(value: Any) -> Any:
    """JSON-ready: pydantic models dumped, datetimes as ISO text."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(plain(value), indent=2, default=str) + "\n")
    sys.stdout.flush()


def table(title: str | None, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold")
    for h in headers:
        t.add_column(h)
    for r in rows:
        t.add_row(*("" if c is None else str(c) for c in r))
    return t


STATE_STYLES = {"started": "green", "ready": "green", "active": "green", "failed": "red", "lost": "red"}


def styled(state: str) -> str:
    style = STATE_STYLES.get(state, "yellow")
    return f"[{style}]{state}[/{style}]"


def ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "-"
    seconds = (now - at).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return at.strftime("%Y-%m-%d %H:%M")
