"""The batch worker process: ``python -m modelfleet.batch.worker``.

It long-polls the ``batch-tasks`` queue, one message at a time:

* a *plan* message: list the job's inputs, write and queue its tasks (``BatchJobs.plan``);
* a *task* message: hide it for as long as its chunk needs (and keep extending that while it
  works), load the model (artifacts verified by sha256, as on nodes; one copy per model per
  process), run the inputs through it batched, write the outputs under keys derived only from the
  task (a redelivery overwrites the same objects), record the completion with a conditional write
  (a second delivery records nothing), and delete the message.

A task that raises is retried after a short back-off; on its last allowed receive it is recorded
as dead with its reason (the job's error report) and left to SQS, which moves it to the DLQ. Tasks
of ended jobs (completed, failed, stopped) are dropped. Now and then the worker also looks at the
DLQ, so a task whose worker died on its last receive still ends up dead in its job's report.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import orjson

from modelfleet.adapters import aws
from modelfleet.adapters.dynamo import DynamoStore
from modelfleet.adapters.errors import AdapterError
from modelfleet.adapters.s3 import ArtifactStore
from modelfleet.adapters.sns import EventPublisher
from modelfleet.adapters.sqs import QueueConsumer, Received, WorkQueue
from modelfleet.batch.execute import TaskError, run_csv_chunk, run_files
from modelfleet.batch.jobs import BatchJobs
from modelfleet.batch.mapping_rule import compile_rule
from modelfleet.batch.planner import visibility_timeout
from modelfleet.batch.records import ENDED, BatchTask, JobRecord, TaskKind, TaskRecord, TaskState
from modelfleet.batch.storage import DataStorage, split_uri
from modelfleet.config import Settings
from modelfleet.control.errors import NotFound
from modelfleet.control.events import EventLog
from modelfleet.control.nodes import assigned_model
from modelfleet.control.repository import Repository
from modelfleet.resources import QUEUES
from modelfleet.runtime.artifacts import fetch_model
from modelfleet.runtime.backends import LoadedModel, load_model

__all__ = ["BatchWorker", "ModelCache", "Outcome", "Services", "VisibilityKeeper", "main"]

log = logging.getLogger("modelfleet.batch")

MAX_RECEIVES = next(q.max_receive_count for q in QUEUES if q.logical == "batch-tasks")
RETRY_AFTER_SECONDS = 1
SECONDS_PER_ROW = 0.002
VISIBILITY_CEILING = 3600
DLQ_SWEEP_EVERY = 3.0
JOB_CACHE_SECONDS = 1.0
PLAN_VISIBILITY_SECONDS = 30
RECEIVE_BATCH = 10
SMALL_TASK_ROWS = 10  # after a task this small, up to RECEIVE_BATCH - 1 more are received at once

# Keeps the message being worked on hidden for the given seconds (extended while it runs).
Keeper = Callable[[int], contextlib.AbstractContextManager[Any]]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    """What a worker (or the Lambda consumer) needs, wired from Settings."""

    settings: Settings
    jobs: BatchJobs
    queue: WorkQueue
    dlq: WorkQueue
    storage: DataStorage
    repo: Repository
    artifacts: ArtifactStore

    @classmethod
    def build(cls, settings: Settings) -> Services:
        names = settings.names
        repo = Repository(DynamoStore(aws.client("dynamodb", settings), names))
        sns = aws.client("sns", settings)
        events = EventLog(
            repo,
            EventPublisher(sns, EventPublisher.topic_arn_for(sns, names.topic("events"))),
            settings.event_ttl_days,
        )
        sqs = aws.client("sqs", settings)
        queue = WorkQueue(sqs, QueueConsumer.url_for(sqs, names.queue("batch-tasks")))
        jobs = BatchJobs.from_settings(repo, events, queue, settings)
        s3 = aws.client("s3", settings)
        return cls(
            settings=settings,
            jobs=jobs,
            queue=queue,
            dlq=WorkQueue(sqs, QueueConsumer.url_for(sqs, names.dlq("batch-tasks"))),
            storage=DataStorage(s3),
            repo=repo,
            artifacts=ArtifactStore(s3, names.bucket("artifacts", region=settings.region)),
        )


class ModelCache:
    """Loaded models by model id (a few; batch jobs of one model reuse its copy)."""

    def __init__(self, services: Services, root: Path, keep: int = 2) -> None:
        self._s = services
        self._root = root
        self._keep = keep
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, project_id: str, model_id: str) -> LoadedModel:
        with self._lock:
            if model_id in self._models:
                self._models.move_to_end(model_id)
                return self._models[model_id]
            record = self._s.repo.get_model(project_id, model_id)
            if record is None:
                raise TaskError(f"model '{model_id}' no longer exists")
            assigned = assigned_model(record, self._s.artifacts, self._s.settings.artifact_url_ttl_seconds)
            with httpx.Client(timeout=60.0) as client:
                entry = fetch_model(self._root, project_id, assigned, client)
            model = load_model(
                record.format.value, entry, record.signature, self._s.settings.batch_worker_threads
            )
            self._models[model_id] = model
            while len(self._models) > self._keep:
                _, old = self._models.popitem(last=False)
                old.close()
            return model


class Outcome(StrEnum):
    DONE = "done"  # delete the message
    RETRY = "retry"  # let it come back soon
    DEAD = "dead"  # recorded as dead: let SQS move it to the DLQ


class VisibilityKeeper:
    """Keeps one message hidden while its task runs: re-extends every half timeout."""

    def __init__(self, queue: WorkQueue, receipt: str, seconds: int, already: int = 0) -> None:
        self._queue, self._receipt, self._seconds, self._already = queue, receipt, seconds, already
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="visibility", daemon=True)

    def __enter__(self) -> VisibilityKeeper:
        if self._seconds != self._already:  # the receive already hid it for `already` seconds
            self._queue.set_visibility(self._receipt, self._seconds)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(max(0.5, self._seconds / 2)):
            try:
                self._queue.set_visibility(self._receipt, self._seconds)
            except AdapterError as e:
                log.warning("could not extend a task's visibility: %s", e)

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class BatchWorker:
    def __init__(self, services: Services, model_dir: Path, worker_id: str = "batch") -> None:
        self.s = services
        self.models = ModelCache(services, model_dir)
        self.worker_id = worker_id
        self._last_sweep = 0.0
        self._jobs: dict[tuple[str, str], tuple[float, JobRecord]] = {}

    def job(self, project_id: str, job_id: str) -> JobRecord:
        """The job, re-read at most every JOB_CACHE_SECONDS: a stop reaches workers that late (the
        conditional completion keeps counts exact meanwhile)."""
        key = (project_id, job_id)
        cached = self._jobs.get(key)
        if cached is not None and time.monotonic() - cached[0] < JOB_CACHE_SECONDS:
            return cached[1]
        record = self.s.jobs.get(project_id, job_id)
        if len(self._jobs) > 1000:
            self._jobs.clear()
        self._jobs[key] = (time.monotonic(), record)
        return record

    # --- the loop ---------------------------------------------------------------------------------
    def run(self, stop: threading.Event, wait_seconds: int = 2) -> None:
        """One message is received at a time, so every worker gets its share of a job's chunks. When
        it is a small task (the receive is then the costly call), up to RECEIVE_BATCH - 1 more are
        taken at once and worked off in order, the waiting ones kept hidden."""
        floor = self.s.settings.batch_visibility_floor_seconds
        while not stop.is_set():
            try:
                messages = self.s.queue.receive(wait_seconds, 1, floor)
                if messages and is_small_task(messages[0].body):
                    messages += self.s.queue.receive(0, RECEIVE_BATCH - 1, floor)
                hidden_at = time.monotonic()
                for i, m in enumerate(messages):
                    if stop.is_set():
                        break
                    if time.monotonic() - hidden_at > floor / 3:
                        self._rehide(messages[i:], floor)
                        hidden_at = time.monotonic()
                    try:
                        self.handle(m)
                    except AdapterError as e:  # this message only; it comes back by itself
                        log.warning("batch worker: message %s not handled (%s)", m.message_id, e)
                if time.monotonic() - self._last_sweep > DLQ_SWEEP_EVERY:
                    self._last_sweep = time.monotonic()
                    self.sweep_dlq()
            except AdapterError as e:
                log.warning("batch worker: AWS unavailable (%s); retrying", e)
                stop.wait(1.0)

    def _rehide(self, waiting: list[Received], seconds: int) -> None:
        for m in waiting:
            try:
                self.s.queue.set_visibility(m.receipt, seconds)
            except AdapterError:  # it came back and another worker has it: a duplicate at worst
                continue

    def handle(self, message: Received) -> None:
        """Process one message of the local loop and apply the outcome to it."""
        seconds = self.s.settings.batch_visibility_floor_seconds

        def keep(wanted: int) -> VisibilityKeeper:
            return VisibilityKeeper(self.s.queue, message.receipt, wanted, already=seconds)

        outcome = self.process(message.body, message.receive_count, keep)
        if outcome is Outcome.DONE:
            self.s.queue.delete(message.receipt)
        elif outcome is Outcome.RETRY:
            self.s.queue.set_visibility(message.receipt, RETRY_AFTER_SECONDS)
        else:  # DEAD: the next receive moves it to the DLQ
            self.s.queue.set_visibility(message.receipt, 0)

    def process(
        self,
        raw: str,
        receive_count: int,
        keep: Keeper | None = None,
    ) -> Outcome:
        """One message (a plan or a task) -> what to do with it. Shared by the local loop and the
        Lambda consumer (functions/batch.py), where DONE is success and the rest are failures."""
        try:
            body = orjson.loads(raw)
            project_id, job_id = str(body["project_id"]), str(body["job_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            log.error("batch worker: unreadable message (%s); leaving it to the DLQ", e)
            return Outcome.RETRY if receive_count < MAX_RECEIVES else Outcome.DEAD
        try:
            job = self.job(project_id, job_id)
        except NotFound:
            return Outcome.DONE  # the job was deleted
        if job.state in ENDED:
            return Outcome.DONE  # cancelled (stopped) or already finished
        if body.get("type") == "plan":
            # hidden while it plans (listing, line counts, task writes), so no second planner starts
            floor = self.s.settings.batch_visibility_floor_seconds
            started = time.perf_counter()
            with keep(max(floor, PLAN_VISIBILITY_SECONDS)) if keep else contextlib.nullcontext():
                planned = self.s.jobs.plan(job, self.s.storage, utcnow())
            log.info(
                "batch job %s planned in %.3f s: %s",
                job.job_id,
                time.perf_counter() - started,
                planned.reason,
            )
            return Outcome.DONE
        task = BatchTask.model_validate(body["task"])
        return self.run_task(job, task, receive_count, keep)

    def run_task(
        self,
        job: JobRecord,
        task: BatchTask,
        receive_count: int,
        keep: Keeper | None = None,
    ) -> Outcome:
        """Run a task and record it once. A duplicate of a settled task runs again (its outputs are
        rewritten, identical) and records nothing: cheaper than reading every task's record first."""
        record = TaskRecord(job_id=job.job_id, task=task)
        floor = self.s.settings.batch_visibility_floor_seconds
        seconds = visibility_timeout(task, SECONDS_PER_ROW, floor, VISIBILITY_CEILING)
        started = time.perf_counter()
        try:
            with keep(seconds) if keep else contextlib.nullcontext():
                rows_ok, rows_failed, keys = self._execute(job, task)
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"[:1000]
            log.warning(
                "batch task %s/%s failed (receive %d): %s", job.job_id, task.task_id, receive_count, reason
            )
            if receive_count >= MAX_RECEIVES:
                self.s.jobs.kill_task(job, record, reason, utcnow())
                return Outcome.DEAD
            return Outcome.RETRY
        done = record.model_copy(update={"rows_ok": rows_ok, "rows_failed": rows_failed, "output_keys": keys})
        ran = time.perf_counter() - started
        self.s.jobs.complete_task(job, done, utcnow())
        log.info(
            "batch task %s/%s: %d rows in %.3f s, recorded in %.3f s",
            job.job_id,
            task.task_id,
            task.rows,
            ran,
            time.perf_counter() - started - ran,
        )
        return Outcome.DONE

    def _execute(self, job: JobRecord, task: BatchTask) -> tuple[int, int, list[str]]:
        model = self.models.get(job.project_id, job.model_id)
        dest = split_uri(job.dest_path)
        if task.kind == TaskKind.CSV_ROWS:
            assert job.mapping_rule is not None
            data = self.s.storage.read(split_uri(task.keys[0]), task.byte_start, task.byte_end)
            result = run_csv_chunk(data, compile_rule(job.mapping_rule), model, task.row_start, task.rows)
            name = f"{task.row_start:012d}.jsonl"
            out = dest.child(f"{task.relative[0]}.out/{name}")
            self.s.storage.write(out, result.results)
            keys = [out.uri]
            if result.errors:
                err = dest.child(f"{task.relative[0]}.errors/{name}")
                self.s.storage.write(err, result.errors)
                keys.append(err.uri)
            return result.rows_ok, result.rows_failed, keys
        files = [
            (uri, rel, self.s.storage.read(split_uri(uri)))
            for uri, rel in zip(task.keys, task.relative, strict=True)
        ]
        outcome = run_files(files, model)
        keys = []
        for rel, document in outcome.results.items():
            out = dest.child(f"{rel}.out.json")
            self.s.storage.write(out, document)
            keys.append(out.uri)
        for rel, reason in outcome.errors.items():
            err = dest.child(f"{rel}.error.json")
            self.s.storage.write(err, orjson.dumps({"source": rel, "error": reason}))
            keys.append(err.uri)
        return len(outcome.results), len(outcome.errors), keys

    def sweep_dlq(self) -> int:
        """Dead-lettered tasks not yet recorded as dead (their worker died on the last receive)."""
        seen = 0
        for m in self.s.dlq.receive(0, 10, visibility_seconds=0):  # a look: left visible
            try:
                body = orjson.loads(m.body)
                job = self.s.jobs.get(str(body["project_id"]), str(body["job_id"]))
                if body.get("type") != "task" or job.state in ENDED:
                    continue
                record = self.s.jobs.task(job.job_id, str(body["task"]["task_id"]))
                if record is not None and record.state == TaskState.PENDING:
                    reason = f"moved to the DLQ after {MAX_RECEIVES} receives"
                    seen += self.s.jobs.kill_task(job, record, reason, utcnow())
            except (orjson.JSONDecodeError, KeyError, TypeError, NotFound):
                continue
        return seen


def is_small_task(raw: str) -> bool:
    """A task message of at most SMALL_TASK_ROWS inputs (plans and unreadable bodies are not)."""
    try:
        body = orjson.loads(raw)
        return body.get("type") == "task" and int(body["task"]["rows"]) <= SMALL_TASK_ROWS
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return False


def _warm_imports() -> None:
    """pandas (the CSV parser) loads in the background at start, not during a job's first chunk."""
    with contextlib.suppress(ImportError):  # without it the worker falls back to the csv module
        import pandas  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelfleet.batch.worker")
    parser.add_argument("--worker-id", default="batch-1")
    parser.add_argument("--model-dir", type=Path, default=Path(".modelfleet/batch/models"))
    parser.add_argument("--exit-with-parent", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("botocore", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    threading.Thread(target=_warm_imports, name="warm-imports", daemon=True).start()
    if args.exit_with_parent:
        from modelfleet.local.lifeline import exit_with_parent

        exit_with_parent()
    stop = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker = BatchWorker(Services.build(Settings.from_env()), args.model_dir, args.worker_id)
    log.info("batch worker %s polling", args.worker_id)
    worker.run(stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
