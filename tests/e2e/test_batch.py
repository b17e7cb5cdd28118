"""Batch services end to end on the local platform (two batch workers, 100-row chunks, a 3 s
visibility timeout): the seed's two batch samples through the service face, a manifest job, a
worker killed with kill -9 mid-job (0 lost, 0 duplicated, counted), a poison input in the DLQ,
stopping early, and refused paths."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest

from modelfleet.client import ApiError, Client
from modelfleet.examples.digits import build_example, digits_data
from tests.e2e.batch_support import (
    BATCH_ENV,
    BUCKET,
    DIGITS_RULE,
    SEED_CSV_RULE,
    aws_client,
    create_job,
    csv_bytes,
    ensure_bucket,
    five_input_model,
    job,
    npy_bytes,
    read_lines,
    stop_job,
    tally_rows,
    wait_job,
)
from tests.e2e.platform import RunningPlatform, start_platform, wait_for


@pytest.fixture(scope="module")
def bp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = start_platform(tmp_path_factory.mktemp("batch"), extra_env=BATCH_ENV, nodes=1)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def s3(bp: RunningPlatform) -> Any:
    client = aws_client(bp, "s3")
    ensure_bucket(client)
    return client


@pytest.fixture(scope="module")
def models(bp: RunningPlatform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("batch-models")
    build_example(d)
    with bp.client() as c:
        digits = c.register_model(d / "digits.onnx", name="batch-digits", format="onnx")
        five = c.register_model(five_input_model(d / "five.onnx"), name="five", format="onnx")
    return {"digits": digits["model_id"], "five": five["model_id"]}


def _prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}/"


def _service(c: Client, body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = c.request("POST", "/v1/default/services", json=body)
    return out


def _wait_service(c: Client, service_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        view: dict[str, Any] = c.request("GET", f"/v1/default/services/{service_id}")
        return view if view["status"] in ("finished", "failed", "stopped") else None

    return wait_for(f"batch service {service_id} to end", ended, timeout=60)


def test_seed_file_sample_runs_to_completion(bp: RunningPlatform, s3: Any, models: dict[str, str]) -> None:
    p = _prefix()
    x, y = digits_data()
    for i in range(10):
        s3.put_object(Bucket=BUCKET, Key=f"{p}in/img-{i:02d}.npy", Body=npy_bytes(x[i]))
    body = {  # the seed's sample, with its ids and OBS paths substituted (and no dedicated pool)
        "service_name": "batchservicetest",
        "description": "",
        "infer_type": "batch",
        "config": [
            {
                "model_id": models["digits"],
                "specification": "modelarts.vm.cpu.2u",
                "instance_count": 1,
                "src_path": f"s3://{BUCKET}/{p}in/",
                "dest_path": f"s3://{BUCKET}/{p}out/",
                "req_uri": "/",
                "mapping_type": "file",
            }
        ],
    }
    with bp.client() as c:
        created = _service(c, body)
        assert created["resource_ids"]
        view = _wait_service(c, created["service_id"])
    assert view["status"] == "finished", view
    assert view["batch"]["rows"] == {"done": 10, "total": 10, "ok": 10, "failed": 0}
    for i in range(10):
        doc = orjson.loads(
            s3.get_object(Bucket=BUCKET, Key=f"{p}out/img-{i:02d}.npy.out.json")["Body"].read()
        )
        assert int(np.argmax(doc["outputs"]["probabilities"][0])) == int(y[i])


def test_seed_csv_sample_with_its_mapping_rule(bp: RunningPlatform, s3: Any, models: dict[str, str]) -> None:
    p = _prefix()
    rows = np.arange(250 * 5, dtype=np.float64).reshape(250, 5) / 10.0
    s3.put_object(Bucket=BUCKET, Key=f"{p}in/a.csv", Body=csv_bytes(rows))
    s3.put_object(Bucket=BUCKET, Key=f"{p}in/b.csv", Body=b"1,2,3,4,5\nx,2,3,4,5\n0,0,0,0,1\n")
    body = {
        "service_name": "batchservicetest",
        "description": "",
        "infer_type": "batch",
        "config": [
            {
                "model_id": models["five"],
                "specification": "modelarts.vm.cpu.2u",
                "instance_count": 1,
                "src_path": f"s3://{BUCKET}/{p}in/",
                "dest_path": f"s3://{BUCKET}/{p}out/",
                "req_uri": "/",
                "mapping_type": "csv",
                "mapping_rule": SEED_CSV_RULE,
            }
        ],
    }
    with bp.client() as c:
        view = _wait_service(c, _service(c, body)["service_id"])
    assert view["status"] == "finished", view
    assert view["batch"]["rows"]["done"] == 253 and view["batch"]["rows"]["failed"] == 1
    out = read_lines(s3, f"{p}out/a.csv.out/", ".out/")
    assert [r["row"] for r in out] == list(range(250))  # input order kept across chunks
    weights = np.array([5, 4, 3, 2, 1])  # input5 <- column 0 ... input1 <- column 4
    got = np.array([r["outputs"]["y"] for r in out])
    assert np.allclose(got, rows @ weights, rtol=1e-5)
    b_out = read_lines(s3, f"{p}out/b.csv.out/", ".out/")
    assert [(r["row"], r["outputs"]["y"]) for r in b_out] == [(0, 35.0), (2, 1.0)]
    errors = read_lines(s3, f"{p}out/b.csv.errors/", ".errors/")
    assert errors == [{"row": 1, "error": "column 0: 'x' is not a finite number"}]


def test_manifest_job_and_a_bad_manifest(bp: RunningPlatform, s3: Any, models: dict[str, str]) -> None:
    p = _prefix()
    x, _ = digits_data()
    sources = []
    for i in range(6):
        key = f"{p}data/{'a' if i % 2 else 'b'}/{i}.json"
        s3.put_object(Bucket=BUCKET, Key=key, Body=orjson.dumps(x[i].tolist()))
        sources.append(f"s3://{BUCKET}/{key}")
    manifest = b"".join(orjson.dumps({"source": s, "id": n}) + b"\n" for n, s in enumerate(sources))
    s3.put_object(Bucket=BUCKET, Key=f"{p}manifest.jsonl", Body=manifest)
    s3.put_object(Bucket=BUCKET, Key=f"{p}bad.jsonl", Body=manifest[:50] + b'\n{"id": 3}\n')
    common = {
        "model_id": models["digits"],
        "req_uri": "/",
        "mapping_type": "file",
        "src_type": "ManifestFile",
    }
    with bp.client() as c:
        good = create_job(
            c, src_path=f"s3://{BUCKET}/{p}manifest.jsonl", dest_path=f"s3://{BUCKET}/{p}o/", **common
        )
        bad = create_job(
            c, src_path=f"s3://{BUCKET}/{p}bad.jsonl", dest_path=f"s3://{BUCKET}/{p}o2/", **common
        )
        done, failed = wait_job(c, good["job_id"]), wait_job(c, bad["job_id"])
    assert done["state"] == "completed" and done["rows"]["ok"] == 6, done
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{p}o/")["Contents"]}
    assert listed == {f"{p}o/{p}data/{'a' if i % 2 else 'b'}/{i}.json.out.json" for i in range(6)}
    assert failed["state"] == "failed" and "line 1" in failed["reason"], failed


def test_kill_9_a_worker_mid_job_loses_and_duplicates_nothing(
    bp: RunningPlatform, s3: Any, models: dict[str, str]
) -> None:
    p = _prefix()
    n = 6000
    x, _ = digits_data()
    data = np.tile(x, (n // len(x) + 1, 1))[:n]
    s3.put_object(Bucket=BUCKET, Key=f"{p}in/big.csv", Body=csv_bytes(data))
    with bp.client() as c:
        created = create_job(
            c,
            model_id=models["digits"],
            src_path=f"s3://{BUCKET}/{p}in/",
            dest_path=f"s3://{BUCKET}/{p}out/",
            req_uri="/",
            mapping_type="csv",
            mapping_rule=DIGITS_RULE,
        )
        victim_id, victim = sorted(bp.batch_worker_pids().items())[0]
        wait_for(
            "the job to be part done",
            lambda: job(c, created["job_id"])["tasks"]["done"] > 0,
            30,
        )
        os.kill(victim, signal.SIGKILL)
        final = wait_job(c, created["job_id"], timeout=60)
    assert final["state"] == "completed", final
    assert final["tasks"] == {"done": 60, "total": 60, "failed": 0}
    rows = [r["row"] for r in read_lines(s3, f"{p}out/", ".out/")]
    t = tally_rows(rows, n)
    assert (t.lost, t.duplicated, t.seen) == (0, 0, n)
    wait_for(
        "the killed worker to be restarted",
        lambda: bp.batch_worker_pids().get(victim_id, victim) != victim,
        30,
    )


def test_poison_input_lands_in_the_dlq_and_the_error_report(
    bp: RunningPlatform, s3: Any, models: dict[str, str]
) -> None:
    p = _prefix()
    s3.put_object(Bucket=BUCKET, Key=f"{p}in/good.csv", Body=csv_bytes(np.ones((150, 5))))
    s3.put_object(Bucket=BUCKET, Key=f"{p}in/poison.csv", Body=b"1,2,3,4,5\n\xff\xfe\xfa,1,1,1,1\n")
    with bp.client() as c:
        created = create_job(
            c,
            model_id=models["five"],
            src_path=f"s3://{BUCKET}/{p}in/",
            dest_path=f"s3://{BUCKET}/{p}out/",
            req_uri="/",
            mapping_type="csv",
            mapping_rule=SEED_CSV_RULE,
        )
        final = wait_job(c, created["job_id"], timeout=60)
    assert final["state"] == "completed", final
    assert final["tasks"] == {"done": 3, "total": 3, "failed": 1}
    assert final["rows"]["ok"] == 150 and final["rows"]["failed"] == 2
    [error] = final["errors"]
    assert error["inputs"] == [f"s3://{BUCKET}/{p}in/poison.csv"] and "not UTF-8" in error["reason"]
    sqs = aws_client(bp, "sqs")
    dlq = sqs.get_queue_url(QueueName="modelfleet-batch-tasks-dlq")["QueueUrl"]

    def in_dlq() -> bool:
        got = sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=1, WaitTimeSeconds=1
        )
        return any(orjson.loads(m["Body"])["job_id"] == created["job_id"] for m in got.get("Messages", []))

    wait_for("the poison task in the DLQ", in_dlq, timeout=90)


def test_stopping_early_cancels_the_remaining_tasks(
    bp: RunningPlatform, s3: Any, models: dict[str, str]
) -> None:
    p = _prefix()
    s3.put_object(Bucket=BUCKET, Key=f"{p}in/big.csv", Body=csv_bytes(np.ones((20_000, 5))))
    with bp.client() as c:
        created = create_job(
            c,
            model_id=models["five"],
            src_path=f"s3://{BUCKET}/{p}in/",
            dest_path=f"s3://{BUCKET}/{p}out/",
            req_uri="/",
            mapping_type="csv",
            mapping_rule=SEED_CSV_RULE,
        )
        stopped = stop_job(c, created["job_id"])
        assert stopped["state"] == "stopped" and stopped["status"] == "stopped"
        sqs = aws_client(bp, "sqs")
        url = sqs.get_queue_url(QueueName="modelfleet-batch-tasks")["QueueUrl"]

        def drained() -> bool:
            a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            return (
                int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"]) == 0
            )

        wait_for("the cancelled tasks to be dropped", drained, timeout=60)
        final = job(c, created["job_id"])
    assert final["state"] == "stopped"
    assert final["tasks"]["done"] < 200  # most of its 200 tasks never ran
    # Deleting the service deletes its job, task records and counters with it.
    with bp.client() as c:
        c.request("DELETE", f"/v1/default/services/{created['job_id']}")
        with pytest.raises(ApiError) as gone:
            job(c, created["job_id"])
    assert gone.value.status == 404
    tasks = aws_client(bp, "dynamodb").query(
        TableName="modelfleet-batch_tasks",
        KeyConditionExpression="job_id = :j",
        ExpressionAttributeValues={":j": {"S": created["job_id"]}},
    )
    assert tasks["Items"] == []


@pytest.mark.parametrize(
    ("src", "code"),
    [
        ("s3://someone-elses-bucket/data/", "bucket_not_allowed"),
        ("https://infers-data.obs.xxxxx.com/xgboosterdata/", "scheme_not_allowed"),
        ("file:///etc/", "scheme_not_allowed"),
        (f"s3://{BUCKET}/a/../../b/", "path_not_allowed"),
    ],
)
def test_refused_paths(bp: RunningPlatform, s3: Any, models: dict[str, str], src: str, code: str) -> None:
    with bp.client() as c, pytest.raises(ApiError) as err:
        create_job(
            c,
            model_id=models["digits"],
            src_path=src,
            dest_path=f"s3://{BUCKET}/out/",
            req_uri="/",
            mapping_type="file",
        )
    assert err.value.status == 400 and code in err.value.message
