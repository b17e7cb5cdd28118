"""Rows on batch services' async work (1-3): every input is a CSV row of the digits data set, one
row per task (so N inputs are N queued SQS messages), run by the platform's two batch workers.

1. kill -9 a batch worker while 1,000 queued requests are being worked off;
2. every task message delivered 3 times (two extra copies sent at once from several threads while
   the originals are being worked, so copies run concurrently);
3. a poison message (a row that is not UTF-8) among 999 good ones.

Each counts the rows in the job's outputs: lost = a row with no result, duplicated = a row with
more than one, or a progress counter above the number of rows (a completion recorded twice).
"""

from __future__ import annotations

import os
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson

from faults.result import Context, RowResult
from modelfleet.batch.planner import InputObject, plan_csv
from modelfleet.examples.digits import digits_data
from modelfleet.local.launcher import wait_for
from tests.e2e.batch_support import (
    BUCKET,
    DIGITS_RULE,
    aws_client,
    create_job,
    csv_bytes,
    ensure_bucket,
    job,
    read_lines,
    tally_rows,
    wait_job,
)

# The fault suite's platform runs batch jobs with one row per task (see faults/__main__.py).
BATCH_FAULT_ENV = {
    "MODELFLEET_BATCH_BUCKETS": f"default={BUCKET}",
    "MODELFLEET_BATCH_WORKERS": "2",
    "MODELFLEET_BATCH_CHUNK_ROWS": "1",
    "MODELFLEET_BATCH_VISIBILITY_SECONDS": "3",
}
CHUNK_ROWS = 1


def _rows(n: int) -> np.ndarray:
    x, _ = digits_data()
    return np.tile(x, (n // len(x) + 1, 1))[:n]


def _start(ctx: Context, prefix: str, files: dict[str, bytes]) -> tuple[Any, dict[str, Any]]:
    s3 = aws_client(ctx.platform, "s3")
    ensure_bucket(s3)
    for name, data in files.items():
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}in/{name}", Body=data)
    with ctx.platform.client() as c:
        created = create_job(
            c,
            model_id=ctx.digits_model_id,
            src_path=f"s3://{BUCKET}/{prefix}in/",
            dest_path=f"s3://{BUCKET}/{prefix}out/",
            req_uri="/",
            mapping_type="csv",
            mapping_rule=DIGITS_RULE,
        )
    return s3, created


def _result(s3: Any, prefix: str, final: dict[str, Any], sent: int, good: int, notes: str) -> RowResult:
    """Rows 0..good-1 must each be in the outputs once; progress must not count past them."""
    t = tally_rows([r["row"] for r in read_lines(s3, f"{prefix}out/", ".out/")], good)
    over = max(0, final["rows"]["ok"] - good) + max(0, final["tasks"]["done"] - final["tasks"]["total"])
    return RowResult(
        sent=sent,
        acknowledged=final["rows"]["done"],
        ok=t.once,
        lost=t.lost,
        duplicated=t.duplicated + over,
        notes=f"job {final['state']}; {notes}",
    )


def kill_worker(ctx: Context) -> RowResult:
    """Row 1: kill -9 a batch worker while 1,000 one-row tasks are queued."""
    n = ctx.scaled(1000, 100)
    prefix = f"fault1-{uuid.uuid4().hex[:6]}/"
    s3, created = _start(ctx, prefix, {"rows.csv": csv_bytes(_rows(n))})
    victim_id, victim = sorted(ctx.platform.batch_worker_pids().items())[0]
    with ctx.platform.client() as c:
        wait_for(
            "a tenth of the tasks done",
            lambda: job(c, created["job_id"])["tasks"]["done"] >= n // 10,
            300,
            0.5,
        )
        os.kill(victim, signal.SIGKILL)
        final = wait_job(c, created["job_id"], timeout=900)
    restarted = wait_for(
        "the killed worker restarted",
        lambda: ctx.platform.batch_worker_pids().get(victim_id, victim) != victim,
        60,
    )
    return _result(
        s3, prefix, final, n, n, f"killed {victim_id} (pid {victim}); restarted: {bool(restarted)}"
    )


def triple_delivery(ctx: Context) -> RowResult:
    """Row 2: each task message sent twice more, concurrently, while the originals are worked."""
    n = ctx.scaled(1000, 100)
    prefix = f"fault2-{uuid.uuid4().hex[:6]}/"
    data = csv_bytes(_rows(n))
    s3, created = _start(ctx, prefix, {"rows.csv": data})
    uri = f"s3://{BUCKET}/{prefix}in/rows.csv"
    tasks = plan_csv(InputObject(uri, "rows.csv", len(data)), data, CHUNK_ROWS, 0)
    bodies = [
        orjson.dumps(
            {
                "type": "task",
                "project_id": "default",
                "job_id": created["job_id"],
                "task": t.model_dump(mode="json"),
            }
        ).decode()
        for t in tasks
    ]
    sqs = aws_client(ctx.platform, "sqs")
    url = sqs.get_queue_url(QueueName="modelfleet-batch-tasks")["QueueUrl"]
    with ctx.platform.client() as c:
        wait_for("the job planned", lambda: job(c, created["job_id"])["tasks"]["total"] == n, 300, 0.5)

        def send(batch: list[str]) -> None:
            sqs.send_message_batch(
                QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(batch)]
            )

        copies = [b for b in bodies for _ in range(2)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(send, [copies[i : i + 10] for i in range(0, len(copies), 10)]))
        final = wait_job(c, created["job_id"], timeout=900)

        def drained() -> bool:
            a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            return (
                int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"]) == 0
            )

        wait_for("every copy to be consumed", drained, timeout=600, interval=0.5)
        final = job(c, created["job_id"])
    return _result(s3, prefix, final, n, n, f"{3 * n} deliveries of {n} tasks")


def poison_message(ctx: Context) -> RowResult:
    """Row 3: one poison task (not UTF-8) among 999 good ones: it dies into the DLQ and the job's
    error report after 3 receives; the 999 are each in the output once."""
    good = ctx.scaled(999, 99)
    prefix = f"fault3-{uuid.uuid4().hex[:6]}/"
    files = {"good.csv": csv_bytes(_rows(good)), "poison.csv": b"\xff\xfe," * 64 + b"\n"}
    s3, created = _start(ctx, prefix, files)
    with ctx.platform.client() as c:
        final = wait_job(c, created["job_id"], timeout=900)
    sqs = aws_client(ctx.platform, "sqs")
    dlq = sqs.get_queue_url(QueueName="modelfleet-batch-tasks-dlq")["QueueUrl"]

    def in_dlq() -> bool:
        got = sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=2, WaitTimeSeconds=1
        )
        return any(orjson.loads(m["Body"])["job_id"] == created["job_id"] for m in got.get("Messages", []))

    dead_lettered = bool(wait_for("the poison message in the DLQ", in_dlq, timeout=60, interval=0.5))
    reported = [e for e in final["errors"] if e["inputs"] == [f"s3://{BUCKET}/{prefix}in/poison.csv"]]
    result = _result(
        s3, prefix, final, good + 1, good, f"poison in DLQ: {dead_lettered}; reported: {len(reported)}"
    )
    if dead_lettered and len(reported) == 1:
        result.ok += 1  # the poison message is accounted for: dead-lettered and reported once
    else:
        result.lost += 1
    return result
