"""Batch jobs, the control side: create (checks before any I/O), plan, progress, finish, stop.

A job is one record in ``batch_jobs`` plus its tasks in ``batch_tasks``; the job's progress
counters (tasks done / dead, rows ok / failed / dead) live in that table's ``~progress`` item and
move only with atomic ADDs in the same transaction that records a task's completion, so a task
counts once however often it is delivered:

    create ─► pending ──(a worker plans: tasks + messages)──► running ──► completed
                 │                                              │    └──► failed (every task dead)
                 └──► failed (bad manifest, no inputs)          └──► stopped (stop: tasks cancelled)

Every state change and its event are written together through the outbox (control.events).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from modelfleet.adapters.dynamo import ABSENT, DynamoStore, Write
from modelfleet.adapters.errors import ConditionFailed, ItemNotFound
from modelfleet.adapters.sqs import WorkQueue
from modelfleet.batch.manifest import ManifestError, parse_manifest
from modelfleet.batch.mapping_rule import MappingRuleError, columns_to_body, compile_rule, leaves
from modelfleet.batch.paths import DataLocation, DataPathPolicy, check_data_path
from modelfleet.batch.planner import CsvChunker, InputObject, RecordScanner, plan_files
from modelfleet.batch.records import (
    ENDED,
    EVENT_CODES,
    JOB_TRANSITIONS,
    BatchTask,
    JobRecord,
    JobState,
    MappingType,
    TaskRecord,
    TaskState,
)
from modelfleet.batch.requests import BodyError, inference_routes, tensors_from_columns
from modelfleet.batch.storage import DataStorage, split_uri
from modelfleet.config import Settings
from modelfleet.control.errors import Conflict, InvalidRequest, NotFound
from modelfleet.control.events import EventLog
from modelfleet.control.repository import Repository
from modelfleet.core.url_guard import UrlRefused
from schemas.events import EventType
from schemas.models import ModelRecord

__all__ = ["PROGRESS", "BatchJobs", "JobSpec", "JobView", "plan_message", "task_message"]

log = logging.getLogger(__name__)

PROGRESS = "~progress"  # the task_id of a job's counter item
COUNTERS = ("tasks_done", "tasks_dead", "rows_ok", "rows_failed", "rows_dead")
MANIFEST = "ManifestFile"


@dataclass(frozen=True)
class JobSpec:
    """What a batch service asks for (the seed's batch fields of its one config entry)."""

    model_id: str
    src_path: str
    dest_path: str
    req_uri: str
    mapping_type: str
    mapping_rule: dict[str, Any] | None = None
    src_type: str | None = None


@dataclass(frozen=True)
class JobView:
    job: JobRecord
    counters: dict[str, int]
    errors: list[dict[str, Any]]

    @property
    def tasks_done(self) -> int:
        return self.counters["tasks_done"] + self.counters["tasks_dead"]

    @property
    def rows_done(self) -> int:
        return self.counters["rows_ok"] + self.counters["rows_failed"] + self.counters["rows_dead"]

    @property
    def percent(self) -> int:
        total = self.job.tasks_total
        if self.job.state == JobState.COMPLETED:
            return 100
        return int(100 * self.tasks_done / total) if total else 0

    def as_dict(self) -> dict[str, Any]:
        j = self.job
        return {
            "job_id": j.job_id,
            "service_id": j.service_id,
            "state": j.state.value,
            "reason": j.reason,
            "tasks": {"done": self.tasks_done, "total": j.tasks_total, "failed": self.counters["tasks_dead"]},
            "rows": {
                "done": self.rows_done,
                "total": j.rows_total,
                "ok": self.counters["rows_ok"],
                "failed": self.counters["rows_failed"] + self.counters["rows_dead"],
            },
            "progress": self.percent,
            "errors": self.errors,
            "src_path": j.src_path,
            "dest_path": j.dest_path,
            "created_at": j.created_at.isoformat(),
            "updated_at": j.updated_at.isoformat(),
        }


def plan_message(job: JobRecord) -> str:
    return orjson.dumps({"type": "plan", "project_id": job.project_id, "job_id": job.job_id}).decode()


def task_message(job: JobRecord, task: BatchTask) -> str:
    return orjson.dumps(
        {
            "type": "task",
            "project_id": job.project_id,
            "job_id": job.job_id,
            "task": task.model_dump(mode="json"),
        }
    ).decode()


class BatchJobs:
    def __init__(
        self,
        repo: Repository,
        events: EventLog,
        queue: WorkQueue,
        grants: dict[str, frozenset[str]],
        local_root: str | None,
        chunk_rows: int,
        files_per_task: int,
        plan_piece_bytes: int = 8 << 20,
    ) -> None:
        self._repo = repo
        self._store: DynamoStore = repo.store
        self._events = events
        self._queue = queue
        self._grants = grants
        self._local_root = local_root
        self.chunk_rows = chunk_rows
        self.files_per_task = files_per_task
        self.plan_piece_bytes = max(1, plan_piece_bytes)

    @classmethod
    def from_settings(cls, repo: Repository, events: EventLog, queue: WorkQueue, s: Settings) -> BatchJobs:
        return cls(
            repo,
            events,
            queue,
            s.batch_buckets,
            s.batch_local_root,
            s.batch_chunk_rows,
            s.batch_files_per_task,
            s.batch_plan_piece_bytes,
        )

    # --- checks ---------------------------------------------------------------------------------
    def policy(self, project_id: str) -> DataPathPolicy:
        buckets = self._grants.get(project_id, frozenset()) | self._grants.get("*", frozenset())
        return DataPathPolicy(buckets, self._local_root)

    def check(self, project_id: str, spec: JobSpec) -> tuple[ModelRecord, DataLocation, DataLocation]:
        """Every check that needs no I/O on the user's data: paths, model, route, mapping."""
        policy = self.policy(project_id)
        try:
            src = check_data_path(spec.src_path, policy)
            dest = check_data_path(spec.dest_path, policy)
        except UrlRefused as e:
            raise InvalidRequest(str(e), code=f"batch_path_{e.code.value}") from None
        if spec.src_type not in (None, "", MANIFEST):
            raise InvalidRequest(f"src_type must be empty or '{MANIFEST}', got {spec.src_type!r}")
        if spec.src_type == MANIFEST and (not src.key or src.key.endswith("/")):
            raise InvalidRequest("with src_type ManifestFile, src_path must name the manifest object")
        if not dest.key.endswith("/") and dest.key:
            dest = dest.child("/")
        model = self._repo.get_model(project_id, spec.model_id)
        if model is None:
            raise NotFound("model", spec.model_id)
        if model.signature is None:
            raise InvalidRequest(f"model '{model.model_id}' has no signature; it cannot run a batch job")
        routes = inference_routes(model.name, model.version)
        if spec.req_uri not in routes:
            raise InvalidRequest(
                f"req_uri {spec.req_uri!r} is not an inference route of the model; use one of: "
                + ", ".join(sorted(routes))
            )
        try:
            mapping = MappingType(spec.mapping_type)
        except ValueError:
            raise InvalidRequest(f"mapping_type must be 'file' or 'csv', got {spec.mapping_type!r}") from None
        if mapping == MappingType.FILE:
            if len(model.signature.inputs) != 1:
                raise InvalidRequest(
                    "mapping_type 'file' needs a model with exactly one input; this one takes "
                    + ", ".join(i.name for i in model.signature.inputs)
                )
        else:
            if spec.mapping_rule is None:
                raise InvalidRequest("mapping_type 'csv' needs a mapping_rule")
            try:
                rule = compile_rule(spec.mapping_rule)
                width = max(leaf.index for leaf in leaves(rule)) + 1
                body, _ = columns_to_body(rule, {i: _ONE_ROW for i in range(width)}, 1)
                tensors_from_columns(body.value, 1, model.signature)
            except (MappingRuleError, BodyError) as e:
                raise InvalidRequest(
                    f"mapping_rule cannot feed the model: {e}", code="invalid_mapping_rule"
                ) from None
        return model, src, dest

    # --- create / read / stop -------------------------------------------------------------------
    def create(
        self, project_id: str, job_id: str, spec: JobSpec, now: datetime, service_id: str = ""
    ) -> JobRecord:
        model, src, dest = self.check(project_id, spec)
        job = JobRecord(
            project_id=project_id,
            job_id=job_id,
            service_id=service_id,
            model_id=model.model_id,
            model_name=model.name,
            model_version=model.version,
            src_path=src.uri,
            dest_path=dest.uri,
            req_uri=spec.req_uri,
            mapping_type=MappingType(spec.mapping_type),
            mapping_rule=spec.mapping_rule,
            src_type=spec.src_type or None,
            chunk_rows=self.chunk_rows,
            files_per_task=self.files_per_task,
            created_at=now,
            updated_at=now,
        )
        ev = self._event(job, None, JobState.PENDING, "created", now)
        try:
            self._store.transact([self._job_write(job, ABSENT), *self._events.writes([ev])])
        except ConditionFailed:
            raise Conflict(f"batch job '{job_id}' already exists", code="batch_job_exists") from None
        self._events.publish([ev])
        self._queue.send([plan_message(job)])
        return job

    def get(self, project_id: str, job_id: str) -> JobRecord:
        found = self._store.get("batch_jobs", {"project_id": project_id, "job_id": job_id}, JobRecord)
        if found is None:
            raise NotFound("batch job", job_id)
        return found[0]

    def view(self, project_id: str, job_id: str, max_errors: int = 50) -> JobView:
        job = self.get(project_id, job_id)
        counters = self.counters(job_id)
        errors: list[dict[str, Any]] = []
        if counters["tasks_dead"]:
            for t in self._store.query("batch_tasks", "job_id", job_id, TaskRecord):
                if t.state == TaskState.DEAD and len(errors) < max_errors:
                    errors.append({"task_id": t.task.task_id, "inputs": t.task.keys, "reason": t.error})
        return JobView(job, counters, errors)

    def counters(self, job_id: str) -> dict[str, int]:
        return self._store.get_numbers("batch_tasks", {"job_id": job_id, "task_id": PROGRESS}, COUNTERS)

    def stop(self, project_id: str, job_id: str, now: datetime) -> JobRecord:
        """Stop early: the job ends as stopped and workers drop its remaining tasks (idempotent)."""
        job = self.get(project_id, job_id)
        if job.state in ENDED:
            return job
        return self.transition(job, JobState.STOPPED, "stopped by request; remaining tasks cancelled", now)

    def delete(self, project_id: str, job_id: str, now: datetime) -> None:
        try:
            job = self.get(project_id, job_id)
        except NotFound:
            return
        if job.state not in ENDED:
            job = self.transition(job, JobState.STOPPED, "deleted", now)
        self._store.write(Write("batch_jobs", {"project_id": project_id, "job_id": job_id}, delete=True))
        # Its task records and counters go too. A task still running settles nothing afterwards:
        # its conditional completion finds no record, and the counters are in the same transaction.
        task_ids = [t.task.task_id for t in self._store.query("batch_tasks", "job_id", job_id, TaskRecord)]
        deletes = [
            Write("batch_tasks", {"job_id": job_id, "task_id": t}, delete=True) for t in [*task_ids, PROGRESS]
        ]
        for start in range(0, len(deletes), 100):
            self._store.transact(deletes[start : start + 100])

    # --- state changes ----------------------------------------------------------------------------
    def _job_write(self, job: JobRecord, expect: int) -> Write:
        return Write(
            "batch_jobs", {"project_id": job.project_id, "job_id": job.job_id}, job, job.version_no, expect
        )

    def _event(self, job: JobRecord, old: JobState | None, new: JobState, reason: str, now: datetime) -> Any:
        detail = {"job_id": job.job_id, "service_id": job.service_id}
        code = EVENT_CODES[new]
        if code is not None:
            detail["event_code"] = str(code)
        return EventLog.new(
            now,
            EventType.BATCH_JOB_STATE_CHANGED,
            job.project_id,
            job.job_id,
            from_state=old.value if old else None,
            to_state=new.value,
            reason=reason,
            detail=detail,
        )

    def transition(
        self, job: JobRecord, new: JobState, reason: str, now: datetime, **changes: Any
    ) -> JobRecord:
        """One conditional state change with its event; re-reads and retries when the record moved
        meanwhile, and gives up (returning the current record) when the change is no longer allowed."""
        for _ in range(10):
            if new not in JOB_TRANSITIONS[job.state]:
                return job
            updated = job.model_copy(
                update={
                    "state": new,
                    "reason": reason,
                    "updated_at": now,
                    "version_no": job.version_no + 1,
                    **changes,
                }
            )
            ev = self._event(job, job.state, new, reason, now)
            try:
                self._store.transact([self._job_write(updated, job.version_no), *self._events.writes([ev])])
            except ConditionFailed:
                job = self.get(job.project_id, job.job_id)
                continue
            self._events.publish([ev])
            return updated
        raise Conflict(f"batch job '{job.job_id}' keeps changing; try again")

    # --- planning (run by a worker, on the job's plan message) ---------------------------------------
    def plan(self, job: JobRecord, storage: DataStorage, now: datetime) -> JobRecord:
        """List the inputs, write and queue the tasks (a CSV's as its pieces are read, so workers
        start on them while the job is still pending), then start the job with its totals.
        Deterministic, so a redelivered plan message rewrites the same tasks (their messages may
        go out twice; a task counts once)."""
        if job.state != JobState.PENDING:
            return job
        try:
            objects = self._inputs(job, storage)
        except ManifestError as e:
            return self.transition(job, JobState.FAILED, f"bad manifest: {e}", now)
        if not objects:
            return self.transition(job, JobState.FAILED, f"no input objects under {job.src_path}", now)
        if job.mapping_type == MappingType.FILE:
            tasks = plan_files(objects, job.files_per_task)
            self._queue_tasks(job, tasks)
        else:
            tasks = []
            for obj in objects:
                if not obj.relative.lower().endswith(".csv"):
                    continue
                try:
                    tasks += self._plan_csv_object(job, obj, storage, len(tasks))
                except ItemNotFound:
                    reason = f"{obj.uri} was listed but is gone"
                    return self.transition(job, JobState.FAILED, reason, now)
            if not tasks:
                return self.transition(job, JobState.FAILED, f"no .csv rows under {job.src_path}", now)
        rows_total = sum(t.rows for t in tasks)
        running = self.transition(
            job,
            JobState.RUNNING,
            f"{len(tasks)} task(s), {rows_total} input(s)",
            now,
            tasks_total=len(tasks),
            rows_total=rows_total,
        )
        return self.finish_if_done(job.project_id, job.job_id, now) or running

    def _plan_csv_object(
        self, job: JobRecord, obj: InputObject, storage: DataStorage, first_task: int
    ) -> list[BatchTask]:
        """Read the object in pieces and queue each chunk as soon as its end is known: the first
        tasks run while the rest is read, and planning holds one piece, whatever the object's size."""
        scanner, chunker = RecordScanner(), CsvChunker(obj, job.chunk_rows, first_task)
        tasks: list[BatchTask] = []
        while scanner.offset < obj.size:
            end = min(obj.size, scanner.offset + self.plan_piece_bytes)
            piece = storage.read(_loc(obj.uri), scanner.offset, end)
            if not piece:  # shorter than listed: it changed meanwhile; plan what was there
                break
            ready = chunker.add(scanner.feed(piece))
            self._queue_tasks(job, ready)
            tasks += ready
        ready = chunker.finish()
        self._queue_tasks(job, ready)
        return tasks + ready

    def _queue_tasks(self, job: JobRecord, tasks: list[BatchTask]) -> None:
        """Task records first (never overwriting one a previous attempt wrote: it may be done),
        then their messages: a crash in between leaves the plan message to redo both."""
        records = [TaskRecord(job_id=job.job_id, task=t) for t in tasks]
        writes = [
            Write("batch_tasks", {"job_id": job.job_id, "task_id": r.task.task_id}, r, 1, ABSENT)
            for r in records
        ]
        for start in range(0, len(writes), 100):
            try:
                self._store.transact(writes[start : start + 100])
            except ConditionFailed:
                for w in writes[start : start + 100]:
                    with contextlib.suppress(ConditionFailed):
                        self._store.write(w)
        if tasks:
            self._queue.send([task_message(job, t) for t in tasks])

    def _inputs(self, job: JobRecord, storage: DataStorage) -> list[InputObject]:
        src = _loc(job.src_path)
        if job.src_type == MANIFEST:
            try:
                data = storage.read(src)
            except Exception as e:
                raise ManifestError(f"cannot read {job.src_path}: {e}") from None
            entries = parse_manifest(data, self.policy(job.project_id))
            sizes = {loc.uri: size for loc, size in _listed(storage, entries)}
            missing = [e.location.uri for e in entries if e.location.uri not in sizes]
            if missing:
                raise ManifestError(f"{len(missing)} listed object(s) do not exist, first: {missing[0]}")
            return [InputObject(e.location.uri, e.location.key, sizes[e.location.uri]) for e in entries]
        prefix = src.key
        return [
            InputObject(loc.uri, loc.key[len(prefix) :].lstrip("/") or loc.key.rsplit("/", 1)[-1], size)
            for loc, size in storage.list(src)
        ]

    # --- task outcomes (run by workers) ---------------------------------------------------------------
    def task(self, job_id: str, task_id: str) -> TaskRecord | None:
        found = self._store.get("batch_tasks", {"job_id": job_id, "task_id": task_id}, TaskRecord)
        return found[0] if found else None

    def complete_task(self, job: JobRecord, record: TaskRecord, now: datetime) -> bool:
        """Record a task's completion once: False if another delivery already recorded it."""
        return self._settle(job, record, TaskState.DONE, now)

    def kill_task(self, job: JobRecord, record: TaskRecord, reason: str, now: datetime) -> bool:
        """A poison task (max receives reached): dead, in the job's error report, counted once."""
        dead = record.model_copy(update={"error": reason, "rows_ok": 0, "rows_failed": 0})
        return self._settle(job, dead, TaskState.DEAD, now)

    def _settle(self, job: JobRecord, record: TaskRecord, state: TaskState, now: datetime) -> bool:
        done = record.model_copy(update={"state": state})
        add = (
            {"tasks_done": 1, "rows_ok": record.rows_ok, "rows_failed": record.rows_failed}
            if state == TaskState.DONE
            else {"tasks_dead": 1, "rows_dead": record.task.rows}
        )
        try:
            self._store.transact(
                [
                    Write("batch_tasks", {"job_id": job.job_id, "task_id": record.task.task_id}, done, 2, 1),
                    Write("batch_tasks", {"job_id": job.job_id, "task_id": PROGRESS}, add=add),
                ]
            )
        except ConditionFailed:
            return False
        self.finish_if_done(job.project_id, job.job_id, now, tasks_total=job.tasks_total)
        return True

    def finish_if_done(
        self, project_id: str, job_id: str, now: datetime, tasks_total: int = 0
    ) -> JobRecord | None:
        """End a running job whose tasks are all settled. `tasks_total` (when the caller knows it)
        saves reading the job while tasks remain."""
        c = self.counters(job_id)
        if tasks_total and c["tasks_done"] + c["tasks_dead"] < tasks_total:
            return None
        try:
            job = self.get(project_id, job_id)
        except NotFound:
            return None
        if job.state != JobState.RUNNING or c["tasks_done"] + c["tasks_dead"] < job.tasks_total:
            return job
        if c["tasks_done"] == 0:
            return self.transition(job, JobState.FAILED, f"all {job.tasks_total} task(s) failed", now)
        failed = c["rows_failed"] + c["rows_dead"]
        reason = f"{c['rows_ok']} of {job.rows_total} input(s) succeeded" + (
            f"; {failed} failed (see the error files and the job's errors)" if failed else ""
        )
        return self.transition(job, JobState.COMPLETED, reason, now)


# A row of zeros, which checks a mapping rule against the model. Numeric: cells given as text
# would go through the text-to-number parser, about 0.25 ms per column (16 ms of a create
# request for the 64 columns of a digits image).
_ONE_ROW = np.zeros(1)
_loc = split_uri


def _listed(storage: DataStorage, entries: list[Any]) -> list[tuple[DataLocation, int]]:
    out = []
    for e in entries:
        out += [(loc, size) for loc, size in storage.list(e.location) if loc.uri == e.location.uri]
    return out
