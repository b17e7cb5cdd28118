"""Splitting a batch job into tasks (pure: object listings and line offsets in, tasks out).

* ``file`` mode: the objects, sorted, in ranges of ``files_per_task``.
* ``csv`` mode: each CSV object in chunks of ``chunk_rows`` rows. A chunk is a byte range that
  starts and ends on record boundaries (a newline inside a quoted field is not one), with the
  number of its first row, so a worker reads only its range (an S3 ranged GET) and the output
  keeps the input's row numbers. The planner reads an object piece by piece (`RecordScanner`) and
  `CsvChunker` hands out each chunk as soon as its end is known, so planning holds one piece in
  memory and the first tasks can run while the rest of the object is still being read.

Task ids are the task's position, zero-padded, so the plan of one input is always the same tasks:
a re-planned job (a planner redelivered after a crash) writes the same task records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from modelfleet.batch.records import BatchTask, TaskKind

__all__ = [
    "CsvChunker",
    "InputObject",
    "RecordScanner",
    "line_starts",
    "plan_csv",
    "plan_files",
    "task_id",
    "visibility_timeout",
]


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


class RecordScanner:
    """Where the CSV records of an object start, from its bytes fed piece by piece in order (so a
    planner holds one piece, not the object). A newline inside a quoted field (RFC 4180: an odd
    number of quotes before it, ``""`` being an escaped quote) does not end a record, and the quote
    parity carries from one piece to the next."""

    def __init__(self) -> None:
        self.offset = 0  # bytes fed so far
        self._quoted = False  # inside a quoted field at `offset`

    def feed(self, piece: bytes) -> npt.NDArray[np.int64]:
        """Absolute offsets just past each record-ending newline of `piece` (one past the object's
        last byte for a final newline: the caller, who knows the size, drops that one)."""
        raw = np.frombuffer(piece, dtype=np.uint8)
        newlines = np.flatnonzero(raw == ord("\n"))
        quotes = np.flatnonzero(raw == ord('"'))
        if len(quotes) or self._quoted:  # quotes before each newline, plus the carried parity: even = outside
            newlines = newlines[(np.searchsorted(quotes, newlines) + self._quoted) % 2 == 0]
            self._quoted = bool((len(quotes) + self._quoted) % 2)
        ends = (newlines + 1 + self.offset).astype(np.int64)
        self.offset += len(piece)
        return ends


def line_starts(data: bytes) -> npt.NDArray[np.int64]:
    """Byte offsets where the CSV records of `data` start (a final newline starts no record); an
    array, as a chunk of many lines has many of them."""
    if not data:
        return np.zeros(0, dtype=np.int64)
    ends = RecordScanner().feed(data)
    return np.concatenate(([0], ends[ends < len(data)])).astype(np.int64)


class CsvChunker:
    """The row chunks of one CSV object, planned as its record starts arrive (`RecordScanner`):
    each chunk is a task as soon as the start of the chunk after it is known. The same tasks as
    ``plan_csv`` over all the starts at once, whatever the pieces."""

    def __init__(self, obj: InputObject, chunk_rows: int, first_task: int) -> None:
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1")
        self._obj, self._chunk, self._next_id = obj, chunk_rows, first_task
        self._pending: list[npt.NDArray[np.int64]] = [np.zeros(1, dtype=np.int64)] if obj.size else []
        self._pending_count = 1 if obj.size else 0
        self.rows = 0  # rows in the tasks made so far

    def add(self, record_ends: npt.NDArray[np.int64]) -> list[BatchTask]:
        """Take the offsets `RecordScanner.feed` found; return the chunks they complete."""
        starts = record_ends[record_ends < self._obj.size]
        if len(starts):
            self._pending.append(starts)
            self._pending_count += len(starts)
        tasks: list[BatchTask] = []
        if self._pending_count <= self._chunk:
            return tasks
        pending = np.concatenate(self._pending)
        used = 0
        while len(pending) - used > self._chunk:
            tasks.append(self._task(int(pending[used]), int(pending[used + self._chunk]), self._chunk))
            used += self._chunk
        self._pending = [pending[used:]]
        self._pending_count = len(pending) - used
        return tasks

    def finish(self) -> list[BatchTask]:
        """The last chunk (the object's end closes it)."""
        if not self._pending_count:
            return []
        first = int(np.concatenate(self._pending)[0])
        task = self._task(first, self._obj.size, self._pending_count)
        self._pending, self._pending_count = [], 0
        return [task]

    def _task(self, byte_start: int, byte_end: int, rows: int) -> BatchTask:
        task = BatchTask(
            task_id=task_id(self._next_id),
            kind=TaskKind.CSV_ROWS,
            keys=[self._obj.uri],
            relative=[self._obj.relative],
            byte_start=byte_start,
            byte_end=byte_end,
            row_start=self.rows,
            rows=rows,
        )
        self._next_id += 1
        self.rows += rows
        return task


def plan_csv(obj: InputObject, data: bytes, chunk_rows: int, first_task: int) -> list[BatchTask]:
    """Every chunk of one CSV object from its bytes at once (the streamed plan in one piece)."""
    chunker = CsvChunker(obj, chunk_rows, first_task)
    return chunker.add(RecordScanner().feed(data)) + chunker.finish()


def visibility_timeout(task: BatchTask, seconds_per_row: float, floor: int, ceiling: int) -> int:
    """How long a worker keeps a task hidden: enough for its rows, within [floor, ceiling]. The
    worker extends it while it works, so this only bounds how soon a dead worker's task returns."""
    return int(min(ceiling, max(floor, round(task.rows * seconds_per_row))))
