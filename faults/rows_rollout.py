"""Row 5: a failing new version during a rollout.

A real-time service (`/v1/{project_id}/services`) serves steady traffic from a client thread; a
PUT moves it to a version that fails every request the old version accepts (an ONNX model whose
input is [n, 32], sent [1, 64] rows), as a canary (50% then 100%, 2 s bakes). The canary's gate
must roll it back by itself.

Client traffic is counted request by request: every request sent must get an answer (`lost` is a
request without one). An answer is `ok` when it is a 200 of the old version, or the failing
version's own 4xx: requests the gateway routed to the canary are errors *seen*, the price of a
canary, reported apart ("canary errors", during the bake and just after the rollback while the
gateways' routing tables catch up), never lost. A 5xx, or a 4xx of the old version, is not ok.

The rollback outcome is checked four ways: the update ended `rolled_back` with no intervention,
the failure event (event 1, with its reason) was published to the service's SNS topic and is in
its event history, the API reports it, and afterwards 100% of a probe is answered 200 by the old
version. A check that fails counts as one lost (the promised rollback was not delivered), as row
4 counts a lost update.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
import numpy as np
from onnx import TensorProto, helper

from faults.result import Context, RowResult
from modelfleet.local.launcher import wait_for

PROJECT = "default"  # the bootstrap admin key's project
ROLLED_BACK = "rolled_back"


@dataclass
class RolloutRowResult(RowResult):
    """Row 5's figures: the client's, plus the canary's errors (seen, not lost) and the checks."""

    canary_errors_during_bake: int = 0
    canary_errors_after_rollback: int = 0  # routed to the canary before the gateways caught up
    rollback_checks: dict[str, bool] = field(default_factory=dict)


@dataclass
class Traffic:
    """What the client thread saw; `phase` is set by the row as the rollout moves."""

    sent: int = 0
    answered: int = 0
    ok: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    canary_errors: Counter[str] = field(default_factory=Counter)  # by phase
    not_ok: list[str] = field(default_factory=list)
    phase: str = "before"  # before | bake | after
    old_streak: int = 0  # consecutive 200s of the old version
    lock: threading.Lock = field(default_factory=threading.Lock)


def _failing_model() -> bytes:
    """Accepts FP32 [n, 32] only: every digits request ([n, 64]) fails its signature check."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["y"])],
        "narrow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 32])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return bytes(model.SerializeToString())


def _register(http: httpx.Client, artifact: bytes, version: str) -> str:
    r = http.post(
        f"/v1/{PROJECT}/models",
        json={
            "model_name": "fault-rollout",
            "model_version": version,
            "model_type": "ONNX",
            "model_artifact": base64.b64encode(artifact).decode(),
            "file_name": "model.onnx",
        },
    )
    r.raise_for_status()
    return str(r.json()["model_id"])


def _config(model_id: str) -> list[dict[str, Any]]:
    return [
        {"model_id": model_id, "weight": 100, "specification": "modelarts.vm.cpu.2u", "instance_count": 1}
    ]


def _subscribed_queue(ctx: Context, name: str) -> tuple[Any, str, str]:
    """An SNS topic for the service's notifications, delivered to an SQS queue the row reads."""

    def aws(service: str) -> Any:
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=ctx.platform.aws_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    sns, sqs = aws("sns"), aws("sqs")
    topic = sns.create_topic(Name=name)["TopicArn"]
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    return sqs, topic, queue


def _notifications(sqs: Any, queue: str, until: float) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while time.monotonic() < until and not any(m.get("event") == 1 for m in got):
        for m in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            got.append(json.loads(json.loads(m["Body"])["Message"]))
    return got


def _send(http: httpx.Client, sid: str, body: bytes, traffic: Traffic, old: str | None) -> str | None:
    """One request; accounts its answer. Returns the version that answered it 200 (else None)."""
    with traffic.lock:
        traffic.sent += 1
        phase = traffic.phase
    try:
        r = http.post(
            f"/v1/{PROJECT}/services/{sid}/infer", content=body, headers={"content-type": "application/json"}
        )
    except httpx.HTTPError as e:
        with traffic.lock:
            traffic.not_ok.append(f"no answer: {type(e).__name__}")
        return None
    version = str(r.headers.get("x-model-version", ""))
    with traffic.lock:
        traffic.answered += 1
        traffic.statuses[r.status_code] += 1
        if r.status_code == 200 and (old is None or version == old):
            traffic.ok += 1
            traffic.old_streak += 1
        elif old is not None and version and version != old and 400 <= r.status_code < 500:
            traffic.ok += 1  # the failing canary's own error: seen, counted apart
            traffic.canary_errors[phase] += 1
            traffic.old_streak = 0
        else:
            traffic.not_ok.append(f"{r.status_code} from version '{version}' ({phase})")
            traffic.old_streak = 0
    return version if r.status_code == 200 else None


def failing_version(ctx: Context) -> RowResult:
    """Row 5 (see the module's docstring)."""
    http = httpx.Client(
        base_url=ctx.platform.url,
        headers={"X-Auth-Token": ctx.platform.admin_key},
        timeout=30,
        verify=ctx.platform.ca_file or True,
    )
    sid = ""
    try:
        old_model = _register(http, (ctx.workdir / "digits.onnx").read_bytes(), "1.0.0")
        bad_model = _register(http, _failing_model(), "2.0.0")
        sqs, topic, queue = _subscribed_queue(ctx, "fault-rollout")
        created = http.post(
            f"/v1/{PROJECT}/services",
            json={
                "service_name": "fault-rollout",
                "infer_type": "real-time",
                "config": _config(old_model),
                "additional_properties": {"smn_notification": {"topic_urn": topic, "events": [1]}},
            },
        )
        created.raise_for_status()
        sid = str(created.json()["service_id"])
        return _roll_out(ctx, http, sid, (old_model, bad_model), (sqs, queue))
    finally:
        if sid:
            with contextlib.suppress(httpx.HTTPError):
                http.delete(f"/v1/{PROJECT}/services/{sid}")
        http.close()


def _service(http: httpx.Client, sid: str) -> dict[str, Any]:
    r = http.get(f"/v1/{PROJECT}/services/{sid}")
    r.raise_for_status()
    found: dict[str, Any] = r.json()
    return found


def _roll_out(
    ctx: Context, http: httpx.Client, sid: str, models: tuple[str, str], inbox: tuple[Any, str]
) -> RowResult:
    old_model, bad_model = models
    wait_for("the service to run", lambda: _service(http, sid)["status"] == "running", timeout=60)
    x = np.random.default_rng(5).random((1, 64), dtype=np.float32)
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": x.ravel().tolist()}]}
    ).encode()
    traffic = Traffic()
    warmup = Traffic()  # until the gateways route to the service (not counted: no fault yet)
    old = wait_for("the old version to answer", lambda: _send(http, sid, body, warmup, None) or None)
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            _send(http, sid, body, traffic, old)
            stop.wait(0.01)  # steady, not flooding: ~50-100 requests a second

    thread = threading.Thread(target=client, name="fault-rollout-client", daemon=True)
    thread.start()
    checks: dict[str, bool] = {}
    reason = ""
    try:
        wait_for("steady traffic", lambda: traffic.old_streak >= 20, timeout=30)
        put = http.put(
            f"/v1/{PROJECT}/services/{sid}",
            json={
                "config": _config(bad_model),
                "rollout": {
                    "strategy": "canary",
                    "steps": [50, 100],
                    "bake_seconds": 2,
                    "max_error_rate": 0.1,
                    "min_requests": 5,
                },
            },
        )
        put.raise_for_status()
        with traffic.lock:
            traffic.phase = "bake"
        budget = 60.0 if ctx.short else 120.0

        def judged() -> dict[str, Any] | None:
            s = _service(http, sid)
            return s if s["update_status"] in (ROLLED_BACK, "done") else None

        final = wait_for("the canary to be judged", judged, timeout=budget, interval=0.1)
        with traffic.lock:
            traffic.phase = "after"
            traffic.old_streak = 0
        reason = str(final.get("update_reason", ""))
        checks["rolled back automatically"] = final["update_status"] == ROLLED_BACK
        config = [(c["model_id"], int(c["weight"])) for c in final["config"]]
        checks["API reports it"] = "error rate" in reason and config == [(old_model, 100)]
        with contextlib.suppress(TimeoutError):
            wait_for("the old version only", lambda: traffic.old_streak >= 30, timeout=30)
    finally:
        stop.set()
        thread.join(timeout=40)
    probe = Traffic(phase="after")
    for _ in range(ctx.scaled(200, 50)):
        _send(http, sid, body, probe, old)
    back = probe.statuses[200] == probe.sent == probe.ok
    checks["100% back on the old version"] = back
    history = http.get(f"/v1/{PROJECT}/services/{sid}/events").json().get("events", [])
    recorded = any(e.get("event_code") == 1 and e.get("update") == ROLLED_BACK for e in history)
    published = _notifications(*inbox, time.monotonic() + 30)
    checks["failed event published with reason"] = recorded and any(
        m.get("event") == 1 and "rolled back" in str(m.get("reason", "")) for m in published
    )
    failed_checks = [name for name, passed in checks.items() if not passed]
    sent = traffic.sent + probe.sent
    answered = traffic.answered + probe.answered
    notes = (
        f"canary errors during bake {traffic.canary_errors['bake']}, after rollback "
        f"{traffic.canary_errors['after']}; rolled back: {reason[:90]!r}; probe "
        f"{probe.statuses[200]}/{probe.sent} on the old version"
    )
    if failed_checks:
        notes += f"; FAILED: {', '.join(failed_checks)}"
    if traffic.not_ok or probe.not_ok:
        notes += f"; not ok: {(traffic.not_ok + probe.not_ok)[:3]}"
    statuses = traffic.statuses + probe.statuses
    return RolloutRowResult(
        sent=sent,
        acknowledged=answered,
        ok=traffic.ok + probe.ok,
        lost=(sent - answered) + len(failed_checks),
        duplicated=0,  # one HTTP answer per request by construction
        errors_5xx=sum(n for status, n in statuses.items() if status >= 500),
        notes=notes,
        canary_errors_during_bake=traffic.canary_errors["bake"],
        canary_errors_after_rollback=traffic.canary_errors["after"],
        rollback_checks=checks,
    )
