"""The journaled local moto server: state survives kill -9, torn journals, SIGTERM and parent death."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from modelfleet.local.aws_journal import Journal, Kind, classify, replay

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 15.0
MIB = 1024 * 1024
MATCHING = "deployment.state_changed"
make_client: Any = boto3.client  # the stubs only type literal service names


class LineReader:
    """Reads lines from a pipe with a deadline (no blocking readline)."""

    def __init__(self, stream: IO[bytes] | None) -> None:
        assert stream is not None
        self.fd = stream.fileno()
        self.buffer = b""

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self.fd, selectors.EVENT_READ)
            while b"\n" not in self.buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no line within {timeout}s (got {self.buffer!r})")
                if selector.select(remaining):
                    chunk = os.read(self.fd, 4096)
                    if not chunk:
                        raise EOFError(f"stream closed (got {self.buffer!r})")
                    self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    endpoint: str
    replayed: int
    home: Path
    clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = make_client(
                service,
                endpoint_url=self.endpoint,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=Config(retries={"max_attempts": 1}),
            )
        return self.clients[service]

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=EXIT_TIMEOUT)


def server_command(home: Path) -> list[str]:
    return [sys.executable, "-m", "modelfleet.local.aws_server", "--home", str(home), "--port", "0"]


def parse_ready(line: str) -> tuple[str, int]:
    word, endpoint, replayed = line.split(" ")
    assert word == "MOTO_READY", line
    assert replayed.startswith("replayed=")
    return endpoint, int(replayed.removeprefix("replayed="))


Launch = Callable[..., Server]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(home: Path, *extra: str) -> Server:
        log = (tmp_path / "server.log").open("ab")
        cmd = [*server_command(home), "--ephemeral-table", "hb", *extra]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=log)
        log.close()
        procs.append(proc)
        endpoint, replayed = parse_ready(LineReader(proc.stdout).readline(READY_TIMEOUT))
        return Server(proc, endpoint, replayed, home)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=EXIT_TIMEOUT)
        if proc.stdout:
            proc.stdout.close()


def journal_records(home: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (home / "journal.jsonl").read_bytes().splitlines()]


def record_target(record: dict[str, Any]) -> str:
    return str(record["h"].get("X-Amz-Target", "")).rsplit(".", 1)[-1]


def record_body(record: dict[str, Any], home: Path) -> bytes:
    if "blob" in record:
        return (home / "blobs" / str(record["blob"])).read_bytes()
    return base64.b64decode(str(record["b"]))


def pid_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie has exited; only its parent has not reaped it yet


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def snapshot(server: Server) -> dict[str, Any]:
    """Everything the platform relies on, minus timestamps and the (port-dependent) endpoint."""
    ddb, s3, sqs, sns = (server.client(s) for s in ("dynamodb", "s3", "sqs", "sns"))
    state: dict[str, Any] = {"tables": {}, "objects": {}, "queues": {}, "subscriptions": {}}
    for table in ddb.list_tables()["TableNames"]:
        desc = ddb.describe_table(TableName=table)["Table"]
        items = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
        state["tables"][table] = {
            "keys": desc["KeySchema"],
            "attributes": sorted(desc["AttributeDefinitions"], key=lambda a: a["AttributeName"]),
            "indexes": sorted(ix["IndexName"] for ix in desc.get("GlobalSecondaryIndexes", [])),
            "ttl": ddb.describe_time_to_live(TableName=table)["TimeToLiveDescription"],
            "items": sorted(items, key=repr),
        }
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            got = s3.get_object(Bucket=bucket, Key=obj["Key"])
            state["objects"][(bucket, obj["Key"])] = {
                "sha256": hashlib.sha256(got["Body"].read()).hexdigest(),
                "etag": got["ETag"],
                "type": got["ContentType"],
                "meta": got["Metadata"],
            }
    for url in sqs.list_queues().get("QueueUrls", []):
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        for volatile in ("CreatedTimestamp", "LastModifiedTimestamp"):
            attrs.pop(volatile, None)
        state["queues"][url.rsplit("/", 1)[-1]] = attrs
    state["topics"] = sorted(t["TopicArn"] for t in sns.list_topics()["Topics"])
    for sub in sns.list_subscriptions()["Subscriptions"]:
        attrs = sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"]
        state["subscriptions"][sub["SubscriptionArn"]] = attrs
    return state


def populate(server: Server) -> dict[str, bytes]:
    """Write one of everything; returns the S3 payloads by key."""
    ddb, s3, sqs, sns = (server.client(s) for s in ("dynamodb", "s3", "sqs", "sns"))
    ddb.create_table(
        TableName="models",
        KeySchema=[
            {"AttributeName": "project_id", "KeyType": "HASH"},
            {"AttributeName": "model_id", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "project_id", "AttributeType": "S"},
            {"AttributeName": "model_id", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.update_time_to_live(
        TableName="models", TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"}
    )
    ddb.create_table(
        TableName="hb",
        KeySchema=[{"AttributeName": "node_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "node_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(5):
        ddb.put_item(
            TableName="models",
            Item={
                "project_id": {"S": "p1"},
                "model_id": {"S": f"m{i}"},
                "version": {"N": str(i)},
                "blob": {"B": bytes([i, 0, 255])},
                "tags": {"SS": ["a", f"t{i}"]},
                "spec": {"M": {"runtime": {"S": "onnx"}, "shape": {"L": [{"N": "1"}, {"N": "3"}]}}},
                "live": {"BOOL": i % 2 == 0},
                "none": {"NULL": True},
            },
        )
    ddb.batch_write_item(
        RequestItems={
            "models": [{"PutRequest": {"Item": {"project_id": {"S": "p2"}, "model_id": {"S": "b"}}}}]
        }
    )
    ddb.delete_item(TableName="models", Key={"project_id": {"S": "p1"}, "model_id": {"S": "m4"}})
    with pytest.raises(ClientError) as failed:
        ddb.update_item(
            TableName="models",
            Key={"project_id": {"S": "p1"}, "model_id": {"S": "m0"}},
            UpdateExpression="SET state_ = :s",
            ConditionExpression="version = :v",
            ExpressionAttributeValues={":s": {"S": "FAILED-UPDATE"}, ":v": {"N": "99"}},
        )
    assert failed.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    ddb.update_item(
        TableName="models",
        Key={"project_id": {"S": "p1"}, "model_id": {"S": "m1"}},
        UpdateExpression="SET state_ = :s ADD version :one",
        ConditionExpression="version = :v",
        ExpressionAttributeValues={":s": {"S": "READY"}, ":v": {"N": "1"}, ":one": {"N": "1"}},
    )

    def race(i: int) -> None:  # concurrent writes to one item: replay must apply them in the same order
        ddb.update_item(
            TableName="models",
            Key={"project_id": {"S": "race"}, "model_id": {"S": "r"}},
            UpdateExpression="SET last_writer = :w ADD writes :one",
            ExpressionAttributeValues={":w": {"N": str(i)}, ":one": {"N": "1"}},
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(race, range(64)))
    for i in range(3):
        ddb.put_item(TableName="hb", Item={"node_id": {"S": f"n{i}"}, "at": {"N": str(i)}})
    ddb.batch_write_item(RequestItems={"hb": [{"PutRequest": {"Item": {"node_id": {"S": "nb"}}}}]})

    payloads = {
        "small.json": b'{"hello": "world"}',
        "big/5mib.bin": os.urandom(5 * MIB),
        "dir/a b+c%2Fd é.txt": "odd key ü".encode(),
        "delete-me": b"gone",
        "batch-gone-1": b"1",
        "batch-gone-2": b"2",
    }
    s3.create_bucket(Bucket="artifacts")
    for key, data in payloads.items():
        s3.put_object(
            Bucket="artifacts",
            Key=key,
            Body=data,
            ContentType="application/x-test",
            Metadata={"k_ey": key[:3]},
        )
    s3.delete_object(Bucket="artifacts", Key="delete-me")
    s3.delete_objects(
        Bucket="artifacts", Delete={"Objects": [{"Key": "batch-gone-1"}, {"Key": "batch-gone-2"}]}
    )
    s3.copy_object(
        Bucket="artifacts", Key="small-copy.json", CopySource={"Bucket": "artifacts", "Key": "small.json"}
    )
    for gone in ("delete-me", "batch-gone-1", "batch-gone-2"):
        del payloads[gone]
    payloads["small-copy.json"] = payloads["small.json"]

    host, port = server.endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    chunks = iter([b"sent ", b"chunked"])  # Transfer-Encoding: chunked, no Content-Length
    connection.request(
        "PUT", "/artifacts/chunked.txt", body=chunks, encode_chunked=True, headers={"Content-Type": "a/b"}
    )
    assert connection.getresponse().status == 200
    connection.close()
    payloads["chunked.txt"] = b"sent chunked"

    parts = [os.urandom(5 * MIB), os.urandom(5 * MIB), b"tail" * 256]
    upload = s3.create_multipart_upload(
        Bucket="artifacts", Key="multi/model.onnx", ContentType="application/x-onnx", Metadata={"sha": "abc"}
    )
    etags = [
        s3.upload_part(
            Bucket="artifacts", Key="multi/model.onnx", UploadId=upload["UploadId"], PartNumber=n, Body=p
        )["ETag"]
        for n, p in enumerate(parts, 1)
    ]
    s3.complete_multipart_upload(
        Bucket="artifacts",
        Key="multi/model.onnx",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": e, "PartNumber": n} for n, e in enumerate(etags, 1)]},
    )
    payloads["multi/model.onnx"] = b"".join(parts)
    aborted = s3.create_multipart_upload(Bucket="artifacts", Key="multi/aborted")
    s3.abort_multipart_upload(Bucket="artifacts", Key="multi/aborted", UploadId=aborted["UploadId"])

    for key, version in (("presigned-v2.txt", "s3"), ("presigned-v4.txt", "s3v4")):
        signer = make_client(
            "s3",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(signature_version=version),
        )
        url = signer.generate_presigned_url(
            "put_object", Params={"Bucket": "artifacts", "Key": key}, ExpiresIn=600
        )
        # An explicit type: moto stores an empty object for urllib's default form content type.
        put = urllib.request.Request(
            url, data=key.encode(), method="PUT", headers={"Content-Type": "text/plain"}
        )
        with urllib.request.urlopen(put, timeout=30) as response:
            assert response.status == 200
        payloads[key] = key.encode()

    dlq_url = sqs.create_queue(QueueName="inv-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})
    queue_url = sqs.create_queue(
        QueueName="inv",
        Attributes={"VisibilityTimeout": "17", "MessageRetentionPeriod": "600", "RedrivePolicy": redrive},
    )["QueueUrl"]
    sqs.tag_queue(QueueUrl=queue_url, Tags={"team": "gw"})
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    topic_arn = sns.create_topic(Name="events")["TopicArn"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"FilterPolicy": json.dumps({"event_type": [MATCHING]}), "RawMessageDelivery": "true"},
    )
    sqs.send_message(QueueUrl=queue_url, MessageBody="transient")  # messages are not journaled
    return payloads


def test_state_survives_kill_9(tmp_path: Path, launch: Launch) -> None:
    home = tmp_path / "home"
    first = launch(home)
    assert first.replayed == 0
    assert json.loads((home / "endpoint.json").read_text()) == {
        "endpoint": first.endpoint,
        "pid": first.proc.pid,
    }
    payloads = populate(first)
    before = snapshot(first)
    first.kill9()

    records = journal_records(home)
    uris = [r["u"] for r in records]
    assert not [u for u in uris if "uploadId" in u or "?uploads" in u], (
        "multipart parts must not be journaled"
    )
    assert [record_target(r) for r in records].count("UpdateItem") == 1 + 64  # the race: 64
    assert not [r for r in records if b"FAILED-UPDATE" in record_body(r, home)], (
        "a failed write was journaled"
    )
    hb_writes = [r for r in records if '"hb"' in record_body(r, home).decode("utf-8", "replace")]
    assert [record_target(r) for r in hb_writes] == ["CreateTable"], (
        "only the ephemeral table's schema is journaled"
    )
    assert not {"SendMessage", "Publish"} & {record_target(r) for r in records}
    assert not [r for r in records if "Action=Publish" in record_body(r, home).decode("utf-8", "replace")]
    assert (home / "blobs" / hashlib.sha256(payloads["big/5mib.bin"]).hexdigest()).is_file()
    assert (home / "blobs" / hashlib.sha256(payloads["multi/model.onnx"]).hexdigest()).is_file()

    second = launch(home)
    assert second.replayed == len(records)
    after = snapshot(second)
    # By design, ephemeral-table items and queued messages are not journaled.
    assert (
        len(before["tables"]["hb"]["items"]) == 4
        and before["queues"]["inv"]["ApproximateNumberOfMessages"] == "1"
    )
    before["tables"]["hb"]["items"] = []
    before["queues"]["inv"]["ApproximateNumberOfMessages"] = "0"
    assert after == before
    assert after["tables"]["hb"]["items"] == []
    models = {item["model_id"]["S"]: item for item in after["tables"]["models"]["items"]}
    assert sorted(models) == ["b", "m0", "m1", "m2", "m3", "r"]
    assert models["r"]["writes"] == {"N": "64"}
    assert "state_" not in models["m0"]
    assert models["m1"]["state_"] == {"S": "READY"} and models["m1"]["version"] == {"N": "2"}
    for key, data in payloads.items():
        got = second.client("s3").get_object(Bucket="artifacts", Key=key)
        assert got["Body"].read() == data, key
    assert set(payloads) == {k for (_, k) in after["objects"]}
    multi = after["objects"][("artifacts", "multi/model.onnx")]
    assert (
        multi["etag"].endswith('-3"')
        and multi["type"] == "application/x-onnx"
        and multi["meta"] == {"sha": "abc"}
    )
    assert after["objects"][("artifacts", "small.json")]["meta"] == {"k_ey": "sma"}
    inv = after["queues"]["inv"]
    assert json.loads(inv["RedrivePolicy"])["deadLetterTargetArn"].endswith(":inv-dlq")
    assert inv["VisibilityTimeout"] == "17" and inv["ApproximateNumberOfMessages"] == "0"
    [sub] = after["subscriptions"].values()  # with its original ARN: after == before
    assert json.loads(sub["FilterPolicy"]) == {"event_type": [MATCHING]}

    sqs, sns = second.client("sqs"), second.client("sns")
    queue_url = sqs.get_queue_url(QueueName="inv")["QueueUrl"]
    assert sqs.list_queue_tags(QueueUrl=queue_url)["Tags"] == {"team": "gw"}
    for event_type, body in (("other", "filtered out"), (MATCHING, "delivered")):
        attrs = {"event_type": {"DataType": "String", "StringValue": event_type}}
        sns.publish(TopicArn=sub["TopicArn"], Message=body, MessageAttributes=attrs)
    received: list[str] = []
    deadline = time.monotonic() + 20
    while "delivered" not in received and time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        received += [m["Body"] for m in got.get("Messages", [])]
    assert received == ["delivered"]


def test_torn_last_line_is_skipped_and_repaired(tmp_path: Path, launch: Launch) -> None:
    home = tmp_path / "home"
    first = launch(home)
    sqs = first.client("sqs")
    sqs.create_queue(QueueName="q1")
    first.kill9()
    complete = len(journal_records(home))
    with (home / "journal.jsonl").open("ab") as fh:
        fh.write(b'{"m":"POST","u":"/","h":{"X-Amz-Tar')  # a write cut short by kill -9

    second = launch(home)
    assert second.replayed == complete
    assert "torn" in (tmp_path / "server.log").read_text()
    second.client("sqs").create_queue(QueueName="q2")
    second.kill9()
    assert len(journal_records(home)) == complete + 1  # parses: the new record was not glued to the torn one

    third = launch(home)
    assert third.replayed == complete + 1
    urls = third.client("sqs").list_queues()["QueueUrls"]
    assert sorted(u.rsplit("/", 1)[-1] for u in urls) == ["q1", "q2"]


def test_moto_reset_empties_the_journal(tmp_path: Path, launch: Launch) -> None:
    home = tmp_path / "home"
    first = launch(home)
    first.client("s3").create_bucket(Bucket="bucket-one")
    first.client("s3").put_object(Bucket="bucket-one", Key="big", Body=os.urandom(100 * 1024))
    assert len(journal_records(home)) == 2 and list((home / "blobs").iterdir())
    reset = urllib.request.Request(f"{first.endpoint}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(reset, timeout=30) as response:
        assert response.status == 200
    assert (home / "journal.jsonl").read_bytes() == b"" and not list((home / "blobs").iterdir())
    first.client("sqs").create_queue(QueueName="after-reset")
    first.kill9()
    second = launch(home)
    assert second.replayed == 1
    assert second.client("s3").list_buckets()["Buckets"] == []
    assert [u.rsplit("/", 1)[-1] for u in second.client("sqs").list_queues()["QueueUrls"]] == ["after-reset"]


def test_sigterm_exits_cleanly(tmp_path: Path, launch: Launch) -> None:
    home = tmp_path / "home"
    server = launch(home)
    server.client("s3").create_bucket(Bucket="bucket-one")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=EXIT_TIMEOUT) == 0
    assert not (home / "endpoint.json").exists()
    again = launch(home)
    assert [b["Name"] for b in again.client("s3").list_buckets()["Buckets"]] == ["bucket-one"]


def test_server_exits_when_its_parent_dies(tmp_path: Path) -> None:
    spawner = "import subprocess, sys; p = subprocess.Popen(sys.argv[1:]); print(p.pid, flush=True); p.wait()"
    cmd = [sys.executable, "-c", spawner, *server_command(tmp_path / "home")]
    parent = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    server_pid = 0
    try:
        reader = LineReader(parent.stdout)
        server_pid = int(reader.readline(READY_TIMEOUT))
        parse_ready(reader.readline(READY_TIMEOUT))
        assert not pid_gone(server_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=EXIT_TIMEOUT)
        wait_until(lambda: pid_gone(server_pid), EXIT_TIMEOUT, f"server {server_pid} to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=EXIT_TIMEOUT)
        if server_pid and not pid_gone(server_pid):
            os.kill(server_pid, signal.SIGKILL)
        if parent.stdout:
            parent.stdout.close()


def environ(
    method: str, path: str = "/", query: str = "", form: bool = False, **headers: str
) -> dict[str, Any]:
    env: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query}
    if form:
        env["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
    env.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    return env


S3_AUTH = (
    "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"
)


@pytest.mark.parametrize(
    ("env", "body", "kind"),
    [
        (environ("POST", x_amz_target="DynamoDB_20120810.PutItem"), b'{"TableName": "hb"}', Kind.SKIP),
        (environ("POST", x_amz_target="DynamoDB_20120810.PutItem"), b'{"TableName": "models"}', Kind.JOURNAL),
        (
            environ("POST", x_amz_target="DynamoDB_20120810.DeleteItem"),
            b'{"TableName": "arn:aws:dynamodb:us-east-1:123456789012:table/hb"}',
            Kind.SKIP,
        ),
        (environ("POST", x_amz_target="DynamoDB_20120810.CreateTable"), b'{"TableName": "hb"}', Kind.JOURNAL),
        (
            environ("POST", x_amz_target="DynamoDB_20120810.TransactWriteItems"),
            b'{"TransactItems": [{"Put": {"TableName": "hb"}}, {"Update": {"TableName": "models"}}]}',
            Kind.JOURNAL,
        ),
        (
            environ("POST", x_amz_target="DynamoDB_20120810.BatchWriteItem"),
            b'{"RequestItems": {"hb": []}}',
            Kind.SKIP,
        ),
        (environ("POST", x_amz_target="DynamoDB_20120810.Query"), b"{}", Kind.READ),
        (environ("POST", x_amz_target="AmazonSQS.SendMessage"), b"{}", Kind.SKIP),
        (environ("POST", x_amz_target="AmazonSQS.SetQueueAttributes"), b"{}", Kind.JOURNAL),
        (environ("POST", form=True), b"Action=Publish&TopicArn=x", Kind.SKIP),
        (environ("POST", form=True), b"Action=Subscribe&TopicArn=x", Kind.JOURNAL),
        (environ("GET", query="Action=ListTopics"), b"", Kind.READ),
        (environ("PUT", "/b/k", "uploadId=u&partNumber=1", authorization=S3_AUTH), b"x", Kind.SKIP),
        (environ("POST", "/b/k", "uploads", authorization=S3_AUTH), b"", Kind.MPU_CREATE),
        (environ("POST", "/b/k", "uploadId=u", authorization=S3_AUTH), b"<x/>", Kind.MPU_COMPLETE),
        (environ("DELETE", "/b/k", "uploadId=u", authorization=S3_AUTH), b"", Kind.MPU_ABORT),
        (environ("POST", "/b", "delete", authorization=S3_AUTH), b"<Delete/>", Kind.JOURNAL),
        (environ("PUT", "/b/k", "Action=Publish", authorization=S3_AUTH), b"", Kind.JOURNAL),
        (environ("HEAD", "/b/k", authorization=S3_AUTH), b"", Kind.READ),
        (environ("POST", "/moto-api/reset"), b"", Kind.RESET),
    ],
)
def test_classify(env: dict[str, Any], body: bytes, kind: Kind) -> None:
    assert classify(env, body, frozenset({"hb"}))[0] is kind


def test_journal_round_trips_raw_requests(tmp_path: Path) -> None:
    """Replay rebuilds the environ: raw URI kept exactly, path unquoted, blobs read back, headers restored."""
    journal = Journal(tmp_path / "journal.jsonl")
    big = os.urandom(70 * 1024)
    journal.append("PUT", "/b/a%20b%2Fc?x=1%2B1", {"Host": "h:1", "X-Amz-Meta-A_b": "v"}, b"small")
    journal.append("PUT", "/b/big", {"Host": "h:1", "Transfer-Encoding": "chunked"}, big)
    journal.close()
    assert (tmp_path / "blobs" / hashlib.sha256(big).hexdigest()).read_bytes() == big
    seen: list[dict[str, Any]] = []

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append({**env, "body": env["wsgi.input"].read()})
        start_response("200 OK", [])
        return [b""]

    assert replay(app, tmp_path / "journal.jsonl") == 2
    assert seen[0]["RAW_URI"] == "/b/a%20b%2Fc?x=1%2B1" and seen[0]["PATH_INFO"] == "/b/a b/c"
    assert seen[0]["QUERY_STRING"] == "x=1%2B1" and seen[0]["body"] == b"small"
    assert seen[0]["HTTP_X_AMZ_META_A_B"] == "v"
    assert seen[0]["moto.preserved_header_names"] == {"HTTP_X_AMZ_META_A_B": "X-Amz-Meta-A_b"}
    assert seen[1]["body"] == big and seen[1]["CONTENT_LENGTH"] == str(len(big))
    assert "HTTP_TRANSFER_ENCODING" not in seen[1]


def test_reads_never_see_half_of_a_transaction(tmp_path: Path, launch: Launch) -> None:
    """moto applies TransactWriteItems item by item; the server isolates DynamoDB reads from it."""
    server = launch(tmp_path / "home")
    ddb = server.client("dynamodb")
    ddb.create_table(
        TableName="iso",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
    )
    keys = [f"item-{i}" for i in range(20)]
    done = threading.Event()
    torn: list[set[str]] = []

    def write() -> None:
        for n in range(150):
            ddb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": "iso", "Item": {"k": {"S": k}, "n": {"N": str(n)}}}} for k in keys
                ]
            )
        done.set()

    def read() -> None:
        reader = make_client(
            "dynamodb",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        while not done.is_set():
            items = reader.scan(TableName="iso")["Items"]
            seen = {i["n"]["N"] for i in items}
            if len(items) == len(keys) and len(seen) > 1:
                torn.append(seen)

    threads = [threading.Thread(target=write), *(threading.Thread(target=read) for _ in range(2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert done.is_set()
    assert torn == [], f"{len(torn)} scans saw a transaction half applied, e.g. {torn[0]}"
