"""Splitting a batch job into tasks (pure: object listings and line offsets in, tasks out).

* ``file`` mode: the objects, sorted, in ranges of ``files_per_task``.
* ``csv`` mode: each CSV object in chunks of ``chunk_rows`` rows. A chunk is a byte range that
  starts and ends on line boundaries, with the number of its first row, so a worker reads only its
  range (an S3 ranged GET) and the output keeps the input's row numbers. Rows are lines: a quoted
  field with an embedded newline makes its chunk fail to parse (a task-level error, reported).

Task ids are the task's position, zero-padded, so the plan of one input is always the same tasks:
a re-planned job (a planner redelivered after a crash) writes the same task records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from modelfleet.batch.records import BatchTask, TaskKind

__all__ = ["InputObject", "line_starts", "plan_csv", "plan_files", "task_id", "visibility_timeout"]


@dataclass(frozen=True)
class InputObject:
    uri: str
    relative: str  # the name its outputs are derived from
    size: int


def task_id(n: int) -> str:
    return f"{n:06d}"


def plan_files(objects: Sequence[InputObject], files_per_task: int) -> list[BatchTask]:
    if files_per_task < 1:
        raise ValueError("files_per_task must be at least 1")
    ordered = sorted(objects, key=lambda o: o.relative)
    return [
        BatchTask(
            task_id=task_id(n),
            kind=TaskKind.FILES,
            keys=[o.uri for o in ordered[i : i + files_per_task]],
            relative=[o.relative for o in ordered[i : i + files_per_task]],
            rows=len(ordered[i : i + files_per_task]),
        )
        for n, i in enumerate(range(0, len(ordered), files_per_task))
    ]


def line_starts(data: bytes) -> npt.NDArray[np.int64]:
    """Byte offsets where the CSV records of `data` start (a final newline starts no record); an
    array, as a file of millions of lines has millions of them and the plan needs only one per
    chunk. A newline inside a quoted field (RFC 4180: an odd number of quotes before it, `""`
    being an escaped quote) does not end a record, so chunks never split one."""
    if not data:
        return np.zeros(0, dtype=np.int64)
    raw = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(raw == ord("\n"))
    quotes = np.flatnonzero(raw == ord('"'))
    if len(quotes):  # quotes before each newline; an even count means it is outside every field
        newlines = newlines[np.searchsorted(quotes, newlines) % 2 == 0]
    ends = newlines + 1
    return np.concatenate(([0], ends[ends < len(data)])).astype(np.int64)


def plan_csv(
    obj: InputObject, starts: Sequence[int] | npt.NDArray[np.int64], chunk_rows: int, first_task: int
) -> list[BatchTask]:
    """The row chunks of one CSV object whose lines start at `starts`; ids from `first_task`."""
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    tasks = []
    for n, first in enumerate(range(0, len(starts), chunk_rows)):
        last = min(first + chunk_rows, len(starts))
        tasks.append(
            BatchTask(
                task_id=task_id(first_task + n),
                kind=TaskKind.CSV_ROWS,
                keys=[obj.uri],
                relative=[obj.relative],
                byte_start=int(starts[first]),
                byte_end=int(starts[last]) if last < len(starts) else obj.size,
                row_start=first,
                rows=last - first,
            )
        )
    return tasks


def visibility_timeout(task: BatchTask, seconds_per_row: float, floor: int, ceiling: int) -> int:
    """How long a worker keeps a task hidden: enough for its rows, within [floor, ceiling]. The
    worker extends it while it works, so this only bounds how soon a dead worker's task returns."""
    return int(min(ceiling, max(floor, round(task.rows * seconds_per_row))))
