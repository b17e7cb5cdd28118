"""Helpers for the batch end-to-end tests and fault rows: a data bucket on the platform's S3,
the seed's models (digits; a five-input model for the seed's csv mapping_rule), jobs run through
the native route, and counting a job's outputs (every row once: 0 lost, 0 duplicated)."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import onnx
import orjson
from onnx import TensorProto, helper

from modelfleet.client import Client
from modelfleet.local.launcher import LocalPlatform, wait_for

BUCKET = "batch-data"
BATCH_ENV = {
    "MODELFLEET_BATCH_BUCKETS": f"default={BUCKET}",
    "MODELFLEET_BATCH_WORKERS": "2",
    "MODELFLEET_BATCH_CHUNK_ROWS": "100",
    "MODELFLEET_BATCH_PLAN_PIECE_BYTES": "4096",  # CSVs of a few KiB are planned in several pieces
    "MODELFLEET_BATCH_FILES_PER_TASK": "4",
    "MODELFLEET_BATCH_VISIBILITY_SECONDS": "3",  # a killed worker's task returns after ~3 s
}
ENDED = ("completed", "failed", "stopped")
DIGITS_RULE = {
    "type": "object",
    "properties": {"input": {"type": "array", "items": [{"type": "number", "index": i} for i in range(64)]}},
}
# The seed's csv sample, verbatim.
SEED_CSV_RULE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "data": {
            "type": "object",
            "properties": {
                "req_data": {
                    "type": "array",
                    "items": [
                        {
                            "type": "object",
                            "properties": {
                                "input5": {"type": "number", "index": 0},
                                "input4": {"type": "number", "index": 1},
                                "input3": {"type": "number", "index": 2},
                                "input2": {"type": "number", "index": 3},
                                "input1": {"type": "number", "index": 4},
                            },
                        }
                    ],
                }
            },
        }
    },
}


def aws_client(platform: LocalPlatform, service: str) -> Any:
    """A boto3 client of the platform's AWS stand-in ("s3", "sqs", "dynamodb", ...)."""
    return boto3.client(
        service,
        endpoint_url=platform.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def ensure_bucket(s3: Any, bucket: str = BUCKET) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        s3.create_bucket(Bucket=bucket)


def csv_bytes(matrix: np.ndarray) -> bytes:
    buf = io.StringIO()
    np.savetxt(buf, matrix, delimiter=",", fmt="%.6g")
    return buf.getvalue().encode()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def five_input_model(path: Path) -> Path:
    """y = 1*input1 + 2*input2 + 3*input3 + 4*input4 + 5*input5, each input FLOAT[batch]."""
    names = [f"input{i}" for i in range(1, 6)]
    weights = [helper.make_tensor(f"w{i}", TensorProto.FLOAT, [], [float(i)]) for i in range(1, 6)]
    nodes = [helper.make_node("Mul", [n, f"w{i}"], [f"m{i}"]) for i, n in enumerate(names, start=1)]
    nodes += [helper.make_node("Sum", [f"m{i}" for i in range(1, 6)], ["y"])]
    graph = helper.make_graph(
        nodes,
        "five",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch"]) for n in names],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def service_body(name: str = "batchservicetest", **config: Any) -> dict[str, Any]:
    """A batch service request (the seed's shape) with one config entry."""
    entry = {"specification": "modelarts.vm.cpu.2u", "instance_count": 1, **config}
    return {"service_name": name, "description": "", "infer_type": "batch", "config": [entry]}


def create_job(c: Client, **config: Any) -> dict[str, Any]:
    """Create a batch service through the service face; its job has the service's id."""
    created: dict[str, Any] = c.request("POST", "/v1/default/services", json=service_body(**config))
    return {"job_id": created["service_id"], "resource_ids": created["resource_ids"]}


def job(c: Client, job_id: str) -> dict[str, Any]:
    """The batch job's view (progress, errors) as the service face shows it, plus its status."""
    view: dict[str, Any] = c.request("GET", f"/v1/default/services/{job_id}")
    return {**view["batch"], "status": view["status"], "service_progress": view.get("progress")}


def stop_job(c: Client, job_id: str) -> dict[str, Any]:
    c.request("POST", f"/v1/default/services/{job_id}/stop")
    return job(c, job_id)


def wait_job(c: Client, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        view = job(c, job_id)
        return view if view["state"] in ENDED else None

    return wait_for(f"batch job {job_id} to end", ended, timeout, interval=0.5)


def read_lines(s3: Any, prefix: str, part: str, bucket: str = BUCKET) -> list[dict[str, Any]]:
    """Every JSON line of the objects under `prefix` whose key contains `part` (.out/ or .errors/)."""
    lines: list[dict[str, Any]] = []
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for o in page.get("Contents", []):
            if part in o["Key"]:
                body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
                lines += [orjson.loads(line) for line in body.splitlines() if line.strip()]
    return lines


@dataclass(frozen=True)
class Tally:
    expected: int
    seen: int
    once: int  # rows seen exactly once
    lost: int
    duplicated: int


def tally_rows(rows: list[int], expected: int) -> Tally:
    """Each of rows 0..expected-1 must appear exactly once."""
    counts = Counter(rows)
    lost = sum(1 for r in range(expected) if counts[r] == 0)
    duplicated = sum(n - 1 for n in counts.values() if n > 1) + sum(
        n for r, n in counts.items() if r >= expected
    )
    once = sum(1 for r in range(expected) if counts[r] == 1)
    return Tally(expected, len(rows), once, lost, duplicated)
