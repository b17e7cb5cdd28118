"""Dead-lettered messages come back with the documented redrive: a message received more than its
queue's maxReceiveCount lands in the DLQ (real SQS semantics of the AWS stand-in), and `redrive`
moves it back to the source queue, once."""

from __future__ import annotations

import json
import subprocess
import sys

import boto3
import pytest

from modelfleet.adapters.sqs import WorkQueue, redrive
from tests.e2e.platform import RunningPlatform, wait_for

pytestmark = pytest.mark.e2e


def test_a_dead_lettered_message_is_redriven_once(platform: RunningPlatform) -> None:
    sqs = boto3.client(
        "sqs",
        endpoint_url=platform.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    dlq_url = sqs.create_queue(QueueName="redrive-test-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    src_url = sqs.create_queue(
        QueueName="redrive-test",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})},
    )["QueueUrl"]
    source, dlq = WorkQueue(sqs, src_url), WorkQueue(sqs, dlq_url)
    source.send(['{"task": "poison"}'])
    assert len(source.receive(1, visibility_seconds=0)) == 1  # received once, not deleted
    wait_for("the message to be dead-lettered", lambda: not source.receive(0, visibility_seconds=0), 10)
    wait_for("the message in the DLQ", lambda: dlq.receive(1, visibility_seconds=0), 10)

    assert redrive(source, dlq) == 1
    back = wait_for("the message back in its queue", lambda: source.receive(1, visibility_seconds=30), 10)
    assert [m.body for m in back] == ['{"task": "poison"}']
    assert dlq.receive(0) == []
    assert redrive(source, dlq) == 0  # nothing moves twice


def test_the_redrive_command_finds_the_local_platform(platform: RunningPlatform) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelfleet.local.redrive",
            "batch-tasks",
            "--home",
            str(platform.home),
            "--max",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "moved 0 message(s) from modelfleet-batch-tasks-dlq to modelfleet-batch-tasks" in out.stdout
