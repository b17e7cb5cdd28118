"""Batch throughput: rows per second of a batch job over a 100,000-row CSV of digits images,
against a plain loop over the same file in the same run.

* **modelfleet:** a batch service (the service face's `infer_type: batch`) on a local platform
  of its own (no nodes; two batch workers, one onnxruntime thread each, 25,000-row chunks),
  from the create request to the job's completion: planning, SQS, S3 reads and writes and
  progress records included. The end is the job's status event, received on a queue subscribed
  to the platform's events topic.
* **plain loop:** this process reads the same CSV (from a local file) with pandas in 25,000-row
  chunks, runs onnxruntime ``session.run`` per chunk (default threads) and writes the same JSON
  result lines to a local file. The loop without writing results is shown in the note.

Target: modelfleet >= 0.9x the plain loop.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import Row, compare
from modelfleet.batch.requests import result_lines
from modelfleet.examples.digits import digits_data
from modelfleet.local.launcher import LaunchOptions, LocalPlatform, launch
from modelfleet.resources import Names
from schemas.events import EventType

ROWS = 100_000
CHUNK = 25_000
BUCKET = "bench-batch"
ADMIN_KEY = "mfk_benchbatch:bench-batch-secret-0123456789abcdef"
JOB_ENDS = ("completed", "failed", "stopped")
RULE = {
    "type": "object",
    "properties": {"input": {"type": "array", "items": [{"type": "number", "index": i} for i in range(64)]}},
}


def make_csv(path: Path, rows: int = ROWS) -> Path:
    x, _ = digits_data()
    data = np.tile(x, (rows // len(x) + 1, 1))[:rows]
    buf = io.StringIO()
    np.savetxt(buf, data, delimiter=",", fmt="%.6g")
    path.write_text(buf.getvalue())
    return path


def plain_loop(csv_path: Path, model_path: Path, out_path: Path | None) -> float:
    """Rows per second of pandas chunks + session.run per chunk (+ writing JSON lines if out_path)."""
    import onnxruntime as ort
    import pandas as pd

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    started = time.perf_counter()
    rows = 0
    sink = out_path.open("wb") if out_path else None
    try:
        for chunk in pd.read_csv(csv_path, header=None, chunksize=CHUNK):
            outputs = session.run(names, {"input": chunk.to_numpy(dtype=np.float32)})
            if sink is not None:
                sink.write(
                    result_lines(range(rows, rows + len(chunk)), dict(zip(names, outputs, strict=True)))
                )
            rows += len(chunk)
    finally:
        if sink is not None:
            sink.close()
    return rows / (time.perf_counter() - started)


def batch_phase(workdir: Path, model_path: Path) -> dict[str, Any]:
    """Both figures, measured one right after the other."""
    workdir.mkdir(parents=True, exist_ok=True)
    csv_path = make_csv(workdir / "digits-100k.csv")
    home = workdir / "batch-home"
    shutil.rmtree(home, ignore_errors=True)
    env = {
        "MODELFLEET_BATCH_BUCKETS": f"default={BUCKET}",
        "MODELFLEET_BATCH_WORKERS": "2",
        "MODELFLEET_BATCH_CHUNK_ROWS": str(CHUNK),
        "MODELFLEET_BATCH_WORKER_THREADS": "1",
    }
    platform = launch(home, ADMIN_KEY, LaunchOptions(nodes=0, env=env), timeout=120)
    try:
        s3, ended = aws_client(platform, "s3"), JobEnds(platform)
        s3.create_bucket(Bucket=BUCKET)
        s3.upload_file(str(csv_path), BUCKET, "in/digits.csv")
        with platform.client(timeout=120) as c:
            model_id = c.register_model(model_path, name="bench-batch-digits", format="onnx")["model_id"]
            # a warm-up job: the workers load the model (a one-off per worker, not throughput)
            results: dict[str, Any] = {}
            for label, src in (("warmup", "warm/"), ("run", "in/")):
                if label == "warmup":  # two tasks, so each worker loads the model before the run
                    for n in range(2):
                        s3.put_object(Bucket=BUCKET, Key=f"warm/w{n}.csv", Body=b"0," * 63 + b"0\n")
                started = time.perf_counter()
                config = {
                    "model_id": model_id,
                    "specification": "modelarts.vm.cpu.2u",
                    "instance_count": 1,
                    "src_path": f"s3://{BUCKET}/{src}",
                    "dest_path": f"s3://{BUCKET}/out-{label}/",
                    "req_uri": "/",
                    "mapping_type": "csv",
                    "mapping_rule": RULE,
                }
                body = {"service_name": f"bench-{label}", "infer_type": "batch", "config": [config]}
                created = c.request("POST", "/v1/default/services", json=body)
                ended.wait(created["service_id"], timeout=600)
                seconds = time.perf_counter() - started
                view = c.request("GET", f"/v1/default/services/{created['service_id']}")
                results[label] = {"seconds": seconds, "job": view["batch"]}
    finally:
        platform.stop()
    run = results["run"]
    ok = run["job"]["state"] == "completed" and run["job"]["rows"]["ok"] == ROWS
    loop = plain_loop(csv_path, model_path, workdir / "loop-results.jsonl")
    loop_no_output = plain_loop(csv_path, model_path, None)
    return {
        "rows": ROWS,
        "modelfleet_rows_per_s": ROWS / run["seconds"] if ok else None,
        "modelfleet_seconds": run["seconds"],
        "job": run["job"],
        "loop_rows_per_s": loop,
        "loop_no_output_rows_per_s": loop_no_output,
        "error": "" if ok else f"job ended {run['job']['state']}: {run['job']['reason']}",
    }


def aws_client(platform: LocalPlatform, service: str) -> Any:
    import boto3

    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=platform.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


class JobEnds:
    """How the benchmark learns that a job ended: the platform's status events, on a queue
    subscribed to its events topic (a long poll, as a user would wait; polling the API every
    few milliseconds would load the machine that runs the job)."""

    def __init__(self, platform: LocalPlatform) -> None:
        self._sqs, sns = aws_client(platform, "sqs"), aws_client(platform, "sns")
        self._queue = self._sqs.create_queue(QueueName="bench-batch-job-ends")["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=self._queue, AttributeNames=["QueueArn"])
        sns.subscribe(
            TopicArn=sns.create_topic(Name=Names().topic("events"))["TopicArn"],
            Protocol="sqs",
            Endpoint=arn["Attributes"]["QueueArn"],
            Attributes={
                "FilterPolicy": json.dumps(
                    {"event_type": [EventType.BATCH_JOB_STATE_CHANGED.value], "state": list(JOB_ENDS)}
                ),
                "RawMessageDelivery": "true",
            },
        )

    def wait(self, service_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self._sqs.receive_message(QueueUrl=self._queue, WaitTimeSeconds=1, MaxNumberOfMessages=10)
            for m in got.get("Messages", []):
                self._sqs.delete_message(QueueUrl=self._queue, ReceiptHandle=m["ReceiptHandle"])
                if json.loads(m["Body"]).get("detail", {}).get("service_id") == service_id:
                    return
        raise TimeoutError(f"the batch job of service {service_id} did not end within {timeout:.0f} s")


def rows_per_s(v: float) -> str:
    return f"{v:,.0f} rows/s"


def batch_rows(result: dict[str, Any]) -> list[Row]:
    return [
        compare(
            f"batch job, digits CSV of {result['rows']:,} rows",
            result["modelfleet_rows_per_s"],
            result["loop_rows_per_s"],
            rows_per_s,
            ">= 0.9x plain loop",
            lambda r: r >= 0.9,
            note=(
                "plain loop = pandas chunks + session.run + the same JSON lines to a local file; "
                f"without writing results it does {rows_per_s(result['loop_no_output_rows_per_s'])}"
            ),
            failed=result["error"],
        )
    ]
