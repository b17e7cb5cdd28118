"""Consistency under retries and races: idempotent creates, and optimistic updates."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import pytest

from tests.e2e.conftest import DigitsModels
from tests.e2e.platform import ADMIN_KEY, RunningPlatform, wait_for

pytestmark = pytest.mark.e2e
AUTH = {"authorization": f"Bearer {ADMIN_KEY}"}


def post(platform: RunningPlatform, path: str, body: dict[str, Any], key: str | None) -> httpx.Response:
    headers = {**AUTH, **({"idempotency-key": key} if key else {})}
    return httpx.post(f"{platform.url}{path}", json=body, headers=headers, timeout=60)


def test_creates_with_an_idempotency_key_run_once(
    platform: RunningPlatform, digits: DigitsModels, cleanup: list[str]
) -> None:
    with platform.client() as c:
        model = c.register_model(digits.onnx_path, name="digits-idem", format="onnx")
    body = {"deployment_id": "digits-idem", "model_id": model["model_id"]}
    cleanup.append("digits-idem")

    first = post(platform, "/api/v1/deployments", body, "create-digits-idem-1")
    assert first.status_code == 201, first.text
    replay = post(platform, "/api/v1/deployments", body, "create-digits-idem-1")
    assert replay.status_code == 201
    assert replay.json() == first.json()  # the stored answer, not a second create (that would be 409)

    reused = post(platform, "/api/v1/deployments", {**body, "allocations": 2}, "create-digits-idem-1")
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"
    without_key = post(platform, "/api/v1/deployments", body, None)
    assert without_key.status_code == 409  # no key: a plain duplicate

    # Concurrent duplicates of a new create: one runs; the others get its answer or a retryable 409.
    cleanup.append("digits-idem-2")
    body2 = {"deployment_id": "digits-idem-2", "model_id": model["model_id"]}
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: post(platform, "/api/v1/deployments", body2, "dup-2"), range(8)))
    created = [a for a in answers if a.status_code == 201]
    assert {a.status_code for a in answers} <= {201, 409}
    assert created and all(a.json() == created[0].json() for a in created)
    for a in answers:
        if a.status_code == 409:
            assert a.json()["error"]["code"] == "idempotency_in_progress"
    again = post(platform, "/api/v1/deployments", body2, "dup-2")
    assert again.status_code == 201 and again.json() == created[0].json()
    with platform.client() as c:
        ids = [d["deployment_id"] for d in c.request("GET", "/api/v1/deployments")["deployments"]]
    assert ids.count("digits-idem-2") == 1


def test_of_concurrent_updates_of_one_version_exactly_one_wins(
    platform: RunningPlatform, digits: DigitsModels, cleanup: list[str]
) -> None:
    cleanup.append("digits-occ")
    with platform.client() as c:
        model = c.register_model(digits.onnx_path, name="digits-occ", format="onnx")
        c.deploy("digits-occ", model_id=model["model_id"])
        c.wait_for_state("digits-occ", "started")
        version = wait_for("a settled version", lambda: settled_version(platform))

    def update(i: int) -> httpx.Response:
        body = {"version": version, "allocations": 1 + i % 4}
        return httpx.patch(
            f"{platform.url}/api/v1/deployments/digits-occ", json=body, headers=AUTH, timeout=60
        )

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(update, range(50)))
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 1, codes
    assert codes.count(409) == 49, codes
    assert all(a.json()["error"]["code"] == "version_conflict" for a in answers if a.status_code == 409)
    winner = next(i for i, a in enumerate(answers) if a.status_code == 200)
    with platform.client() as c:
        final = c.get_deployment("digits-occ")
    assert all(v["allocations"] == 1 + winner % 4 for v in final["versions"])
    assert final["version"] > version


def settled_version(platform: RunningPlatform) -> int | None:
    """The deployment's version once its routes are started (the planner stops bumping it)."""
    with platform.client() as c:
        d = c.get_deployment("digits-occ")
    routes = [r for rs in d["routing_table"].values() for r in rs]
    return int(d["version"]) if routes and all(r["routing_state"] == "started" for r in routes) else None


def test_idempotent_key_creates_replay_the_secret_without_storing_it(platform: RunningPlatform) -> None:
    """A replayed key create answers the same working key; the idempotency table holds it only
    sealed under the Idempotency-Key (never the secret, never the Idempotency-Key itself)."""
    idem = str(uuid.uuid4())
    body = {"name": "idem-key", "roles": ["infer"]}
    short = post(platform, "/api/v1/keys", body, "short-key")
    assert short.status_code == 400 and short.json()["error"]["code"] == "invalid_idempotency_key"
    first = post(platform, "/api/v1/keys", body, idem)
    assert first.status_code == 201, first.text
    replay = post(platform, "/api/v1/keys", body, idem)
    assert replay.status_code == 201 and replay.json() == first.json()
    secret = first.json()["api_key"]
    listed = httpx.get(f"{platform.url}/api/v1/keys", headers=AUTH, timeout=30).json()["keys"]
    assert [k["name"] for k in listed].count("idem-key") == 1
    works = httpx.get(
        f"{platform.url}/api/v1/deployments", headers={"authorization": f"Bearer {secret}"}, timeout=30
    )
    assert works.status_code == 200

    dynamo = boto3.client(
        "dynamodb",
        endpoint_url=platform.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    tables = [t for t in dynamo.list_tables()["TableNames"] if t.endswith("idempotency")]
    stored = json.dumps([dynamo.scan(TableName=t)["Items"] for t in tables])
    assert "sealed:v1:" in stored
    assert secret.split(":", 1)[1] not in stored and idem not in stored
