"""A batch job's records, states and transitions (pydantic, kept in DynamoDB as JSON docs)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from schemas.common import Record

__all__ = [
    "EVENT_CODES",
    "JOB_TRANSITIONS",
    "BatchTask",
    "JobRecord",
    "JobState",
    "MappingType",
    "TaskKind",
    "TaskRecord",
    "TaskState",
]


class MappingType(StrEnum):
    FILE = "file"
    CSV = "csv"


class JobState(StrEnum):
    PENDING = "pending"  # created; its tasks are being planned
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"  # stopped early: the remaining tasks were cancelled


JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.RUNNING, JobState.FAILED, JobState.STOPPED, JobState.COMPLETED}),
    JobState.RUNNING: frozenset({JobState.COMPLETED, JobState.FAILED, JobState.STOPPED}),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.STOPPED: frozenset(),
}
ENDED = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.STOPPED})

# The seed's notification event codes (1 failed, 3 running, 11 pending); a job's end has none there.
EVENT_CODES: dict[JobState, int | None] = {
    JobState.PENDING: 11,
    JobState.RUNNING: 3,
    JobState.FAILED: 1,
    JobState.COMPLETED: None,
    JobState.STOPPED: None,
}


class TaskKind(StrEnum):
    FILES = "files"  # a range of whole objects, one request each
    CSV_ROWS = "csv_rows"  # a chunk of rows of one CSV object: a byte range aligned to lines


class TaskState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    DEAD = "dead"  # its message went to the DLQ after max receives


class BatchTask(Record):
    """One unit of work, as planned (pure data; the message body carries it)."""

    task_id: str
    kind: TaskKind
    keys: list[str] = Field(default_factory=list)  # FILES: object URIs; CSV_ROWS: one
    relative: list[str] = Field(default_factory=list)  # output names derived from the inputs'
    byte_start: int = 0
    byte_end: int = 0
    row_start: int = 0
    rows: int = 0


class TaskRecord(Record):
    job_id: str
    task: BatchTask
    state: TaskState = TaskState.PENDING
    rows_ok: int = 0
    rows_failed: int = 0
    error: str = ""  # the last task-level failure (a poison input's reason)
    output_keys: list[str] = Field(default_factory=list)


class JobRecord(Record):
    project_id: str
    job_id: str
    service_id: str = ""
    model_id: str
    model_name: str = ""
    model_version: str = ""
    src_path: str
    dest_path: str
    req_uri: str
    mapping_type: MappingType
    mapping_rule: dict[str, Any] | None = None
    src_type: str | None = None
    chunk_rows: int
    files_per_task: int
    state: JobState = JobState.PENDING
    reason: str = ""
    tasks_total: int = 0
    rows_total: int = 0
    created_at: datetime
    updated_at: datetime
    version_no: int = 1
    errors: list[dict[str, Any]] = Field(default_factory=list)  # dead tasks (poison inputs)
