"""The cloud's invoke router (functions/invoke.py) as Lambda would run it: API Gateway events
into the handler of one warm process (tests/e2e/invoke_driver.py), reaching the local platform's
DynamoDB stand-in and its worker nodes' data ports, as the cloud one reaches DynamoDB and Fargate."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from tests.e2e.conftest import DigitsModels
from tests.e2e.platform import RunningPlatform

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def event(method: str, path: str, key: str | None, body: bytes = b"", query: str = "") -> dict[str, Any]:
    headers = {"content-type": "application/json", "user-agent": "e2e"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "e2e",
            "domainName": "e2e.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "e2e",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": "e2e"},
            "requestId": "e2e",
            "routeKey": "$default",
            "stage": "$default",
            "time": "22/Nov/2026:00:00:00 +0000",
            "timeEpoch": 0,
        },
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }  # fmt: skip


def run_router(platform: RunningPlatform, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    env = {
        **os.environ,
        "MODELFLEET_AWS_ENDPOINT": platform.aws_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MODELFLEET_PUBLISH_EVENTS": "0",  # as in the cloud: no route from the VPC to SNS
        "POWERTOOLS_SERVICE_NAME": "modelfleet-invoke",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.invoke_driver"],
        input=json.dumps(events).encode(),
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    responses: list[dict[str, Any]] = json.loads(done.stdout)
    return responses


def body_of(response: dict[str, Any]) -> Any:
    raw = response.get("body", "")
    data = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
    return json.loads(data) if data[:1] in (b"{", b"[") else data.decode()


def test_the_invoke_router_serves_inference_from_the_workers(
    platform: RunningPlatform, digits: DigitsModels, cleanup: list[str]
) -> None:
    cleanup.append("invoke-digits")
    with platform.client() as c:
        model = c.register_model(digits.onnx_path, name="invoke-digits", format="onnx")
        c.deploy("invoke-digits", model_id=model["model_id"])
        c.wait_for_state("invoke-digits", "started")
    x = digits.x[:5]
    request = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]
    }
    infer = event("POST", "/v2/models/invoke-digits/infer", platform.admin_key, json.dumps(request).encode())
    events = [
        infer,
        infer,  # the same warm instance: its routing table and node link are reused
        event("POST", "/v2/models/nope/infer", platform.admin_key, json.dumps(request).encode()),
        event("POST", "/v2/models/invoke-digits/infer", None, json.dumps(request).encode()),
        event("GET", "/v2/health/ready", None),
        event("GET", "/metrics", platform.admin_key),
    ]
    first, second, unknown, anonymous, ready, metrics = run_router(platform, events)
    direct = ort.InferenceSession(str(digits.onnx_path)).run(None, {"input": x})[0]
    for answer in (first, second):
        assert answer["statusCode"] == 200, answer
        (out,) = body_of(answer)["outputs"]
        np.testing.assert_allclose(
            np.asarray(out["data"]).reshape(out["shape"]), direct, rtol=1e-5, atol=1e-5
        )
    assert unknown["statusCode"] == 404 and "error" in body_of(unknown)
    assert anonymous["statusCode"] == 401
    assert ready["statusCode"] == 200
    assert metrics["statusCode"] == 200
    served = [
        line for line in body_of(metrics).splitlines()
        if line.startswith("modelfleet_inference_requests_total") and 'deployment="invoke-digits"' in line
    ]  # fmt: skip
    assert served and sum(float(line.rsplit(" ", 1)[1]) for line in served) == 2
