"""Helpers of the service-face end-to-end tests: a platform on a service test's time scale, a
small HTTP client speaking `/v1/{project_id}`, the digits models, SNS/SQS for notifications."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper

from modelfleet.examples.digits import digits_data, export_mlp_onnx, train_digits_mlp
from tests.e2e.platform import ADMIN_KEY, RunningPlatform, wait_for

PROJECT = "default"
# Services on a test's time scale: the services task ticks 4x a second, a schedule MINUTE lasts 1 s.
SERVICE_ENV = {"MODELFLEET_SERVICE_TICK": "0.25", "MODELFLEET_SERVICE_SECONDS_PER_MINUTE": "1"}


@dataclass
class Api:
    """`/v1/{project_id}` over HTTP, answering (status, json)."""

    http: httpx.Client
    project: str = PROJECT
    created: list[str] = field(default_factory=list)

    def call(self, method: str, path: str, body: Any = None, project: str | None = None) -> tuple[int, Any]:
        r = self.http.request(method, f"/v1/{project or self.project}{path}", json=body)
        return r.status_code, (r.json() if r.content else None)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        assert status < 300, (status, answer)
        return answer

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self.ok("POST", "/services", body)
        self.created.append(created["service_id"])
        return created

    def service(self, service_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.ok("GET", f"/services/{service_id}")
        return found

    def wait_status(self, service_id: str, status: str, timeout: float = 40.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            s = self.service(service_id)
            return s if s["status"] == status else None

        return wait_for(f"service {service_id} to be {status}", reached, timeout=timeout, interval=0.1)

    def infer(self, service_id: str, rows: np.ndarray) -> httpx.Response:
        body = {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": list(rows.shape),
                    "data": rows.ravel().tolist(),
                }
            ]
        }
        return self.http.post(f"/v1/{self.project}/services/{service_id}/infer", json=body)

    def register(self, path: Path, name: str, version: str) -> str:
        body = {
            "model_name": name,
            "model_version": version,
            "model_type": "ONNX",
            "model_artifact": base64.b64encode(path.read_bytes()).decode(),
            "file_name": "model.onnx",
        }
        model_id: str = self.ok("POST", "/models", body)["model_id"]
        return model_id

    def delete_all(self) -> None:
        for sid in self.created:
            self.call("DELETE", f"/services/{sid}")
        self.created.clear()


def api_for(platform: RunningPlatform, key: str = ADMIN_KEY, project: str = PROJECT) -> Api:
    http = httpx.Client(
        base_url=platform.url, headers={"X-Auth-Token": key}, timeout=60, verify=platform.ca_file or True
    )
    return Api(http, project)


@dataclass(frozen=True)
class Models:
    good: Path  # the digits MLP
    bad: Path  # accepts FP32 [n, 32] only: every digits request fails its signature check
    x: np.ndarray


def build_models(dir: Path) -> Models:
    clf, _, _ = train_digits_mlp()
    good = dir / "digits.onnx"
    export_mlp_onnx(clf, good)
    bad = dir / "narrow.onnx"
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["y"])],
        "narrow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 32])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(bad))
    x, _ = digits_data()
    return Models(good, bad, x[:16].astype(np.float32))


@dataclass
class Notifications:
    sns: Any
    sqs: Any
    topic_arn: str
    queue_url: str

    def received(self, until: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Messages (the decoded notifications) until `until(messages)` holds."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until(got):
            for m in self.sqs.receive_message(
                QueueUrl=self.queue_url, WaitTimeSeconds=1, MaxNumberOfMessages=10
            ).get("Messages", []):
                got.append(json.loads(json.loads(m["Body"])["Message"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
        return got


def subscribed_queue(platform: RunningPlatform, name: str) -> Notifications:
    aws = {
        "endpoint_url": platform.aws_endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    sns, sqs = boto3.client("sns", **aws), boto3.client("sqs", **aws)
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return Notifications(sns, sqs, topic, queue)


def pool_node(platform: RunningPlatform, pool: str, node_id: str) -> Iterator[subprocess.Popen[bytes]]:
    """A worker node of a named pool, started (and stopped) by the test itself."""
    key = (platform.home / "secrets" / "node.key").read_text().strip()
    args = [
        sys.executable, "-m", "modelfleet.worker",
        "--node-id", node_id,
        "--control-url", platform.url,
        "--model-dir", str(platform.home / "nodes" / node_id / "models"),
        "--pool", pool,
        "--processors", "2",
        "--memory-bytes", str(10 * 1024**3),
    ]  # fmt: skip
    import os

    proc = subprocess.Popen(args, env={**os.environ, "MODELFLEET_NODE_KEY": key})
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)
