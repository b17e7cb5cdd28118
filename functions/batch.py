"""The batch consumer as a Lambda (the cloud's counterpart of `python -m modelfleet.batch.worker`):
an SQS event source mapping on the `batch-tasks` queue with ReportBatchItemFailures. Each record
is one plan or task message; the ones that must come back (a retry, or a poison task recorded as
dead, which SQS then moves to the DLQ after maxReceiveCount) are reported in `batchItemFailures`,
so the rest of the batch is deleted and never redone."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from modelfleet.batch.worker import BatchWorker, Outcome, Services
from modelfleet.config import Settings

processor = BatchProcessor(event_type=EventType.SQS)
_lock = threading.Lock()
_worker: BatchWorker | None = None


class TaskNotDone(Exception):
    """The record goes back to the queue (its receive count decides retry or DLQ)."""


def worker() -> BatchWorker:
    global _worker
    with _lock:
        if _worker is None:
            _worker = BatchWorker(Services.build(Settings.from_env()), Path(tempfile.gettempdir()) / "models")
        return _worker


def record_handler(record: SQSRecord) -> None:
    count = int(record.attributes.approximate_receive_count or "1")
    outcome = worker().process(record.body, count)
    if outcome is not Outcome.DONE:
        raise TaskNotDone(f"message {record.message_id}: {outcome.value}")


def handler(event: dict[str, Any], context: Any) -> Any:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
