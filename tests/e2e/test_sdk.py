"""The typed SDK against the real platform: pydantic answers, the exception tree, waiters."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from modelfleet import Client
from modelfleet.core.lifecycle import DeploymentState
from modelfleet.examples.digits import build_example, sample_row
from modelfleet.sdk import BadRequest, Conflict, DeploymentFailed, NotFound, WaitTimeout
from schemas.deployments import DeploymentView
from schemas.keys import KeyState, Role
from schemas.models import ModelView
from tests.e2e.platform import ADMIN_KEY, RunningPlatform

pytestmark = pytest.mark.e2e


def test_typed_round_trip_errors_and_waiters(
    platform: RunningPlatform, tmp_path: Path, cleanup: list[str]
) -> None:
    name = f"sdk-{uuid.uuid4().hex[:6]}"
    cleanup.append(name)
    with Client(platform.url, ADMIN_KEY, ca_file=platform.ca_file) as c:
        sent: list[int] = []
        model = c.push_model(build_example(tmp_path), name="digits", format="onnx", progress=sent.append)
        assert isinstance(model, ModelView) and model.signature is not None
        assert sum(sent) == model.size_bytes == model.files[0].size_bytes
        assert [t.name for t in model.signature.inputs] == ["input"]

        created = c.create_deployment(deployment_id=name, model_id=model.model_id, max_batch_size=4)
        assert isinstance(created, DeploymentView) and created.max_batch_size == 4
        polled: list[DeploymentState] = []
        started = c.wait_until_started(name, timeout=90, on_poll=lambda d: polled.append(d.state))
        assert started.state == DeploymentState.STARTED and polled[-1] == DeploymentState.STARTED

        with pytest.raises(Conflict) as dup:
            c.create_deployment(deployment_id=name, model_id=model.model_id)
        assert dup.value.code == "deployment_exists"
        with pytest.raises(NotFound) as missing:
            c.get_deployment("sdk-no-such-deployment")
        assert missing.value.code == "deployment_not_found"
        with pytest.raises(WaitTimeout) as late:
            c.wait_for_state(name, DeploymentState.STOPPED, timeout=0)
        assert isinstance(late.value, TimeoutError)
        assert (
            isinstance(late.value.last, DeploymentView) and late.value.last.state == DeploymentState.STARTED
        )

        result = c.infer_json(
            name, {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": sample_row()}]}
        )
        assert result.outputs["probabilities"].shape == (1, 10) and result.model_version == "1"
        assert result.correlation_id and result.latency_ms > 0
        with pytest.raises(BadRequest):
            c.infer(name, {"wrong": np.zeros((1, 64), dtype=np.float32)})

        resized = c.update_deployment(name, allocations=2)
        assert all(v.allocations == 2 for v in resized.versions) and resized.version > started.version

        key = c.create_key([Role.INFER], name="sdk-test")
        assert key.api_key.startswith(key.key.key_id + ":")
        assert c.revoke_key(key.key.key_id).state == KeyState.REVOKED
        assert any(k.key_id == key.key.key_id for k in c.list_keys())
        assert any(d.deployment_id == name for d in c.list_deployments())
        assert [e.to_state for e in c.deployment_events(name) if e.deployment_id == name and not e.node_id][
            :3
        ] == [
            "pending",
            "starting",
            "started",
        ]


def test_a_deployment_that_cannot_load_raises_deployment_failed(
    platform: RunningPlatform, tmp_path: Path, cleanup: list[str]
) -> None:
    name = f"sdk-bad-{uuid.uuid4().hex[:6]}"
    cleanup.append(name)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torchscript archive" * 20)
    signature = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
    }
    with Client(platform.url, ADMIN_KEY, ca_file=platform.ca_file) as c:
        model = c.push_model(junk, name="junk", format="torchscript", signature=signature)
        c.create_deployment(deployment_id=name, model_id=model.model_id)
        with pytest.raises(DeploymentFailed) as failed:
            c.wait_until_started(name, timeout=90)
    assert failed.value.deployment_id == name and failed.value.reason
