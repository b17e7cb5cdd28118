"""State changes reach an SQS queue subscribed (with a filter policy) to the events topic."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from tests.e2e.conftest import DigitsModels
from tests.e2e.platform import RunningPlatform

pytestmark = pytest.mark.e2e


def test_state_changes_arrive_on_a_subscribed_queue(
    platform: RunningPlatform, digits: DigitsModels, cleanup: list[str]
) -> None:
    cleanup.append("digits-events")
    aws = {
        "endpoint_url": platform.aws_endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    sns, sqs = boto3.client("sns", **aws), boto3.client("sqs", **aws)
    topic = sns.create_topic(Name="modelfleet-events")["TopicArn"]
    queue = sqs.create_queue(QueueName="e2e-digits-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={
            "FilterPolicy": json.dumps(
                {"deployment_id": ["digits-events"], "event_type": ["deployment.state_changed"]}
            ),
        },
    )
    with platform.client() as c:
        model = c.register_model(digits.onnx_path, name="digits-events", format="onnx")
        c.deploy("digits-events", model_id=model["model_id"])
        c.wait_for_state("digits-events", "started")
        c.stop("digits-events")
        c.wait_for_state("digits-events", "stopped")
        history = c.events("digits-events")

    received = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (not received or received[-1]["to_state"] != "stopped"):
        for m in sqs.receive_message(
            QueueUrl=queue, WaitTimeSeconds=1, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", []):
            envelope = json.loads(m["Body"])
            attrs = {k: v["Value"] for k, v in envelope["MessageAttributes"].items()}
            event = json.loads(envelope["Message"])
            assert attrs["deployment_id"] == "digits-events" and attrs["project_id"] == "default"
            assert attrs["event_type"] == event["type"] == "deployment.state_changed"
            received.append(event)
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    received.sort(key=lambda e: e["event_id"])
    states = [e["to_state"] for e in received]
    assert states == ["pending", "starting", "started", "stopping", "stopped"], states
    # The same events are in the deployment's history, in order.
    hist = [e["to_state"] for e in history if e["type"] == "deployment.state_changed"]
    assert hist == states
    assert [e["event_id"] for e in received] == [
        e["event_id"] for e in history if e["type"] == "deployment.state_changed"
    ]
