"""Stop, delete, load failures, and a lost node whose allocations move elsewhere."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from modelfleet.client import ApiError
from tests.e2e.conftest import DigitsModels
from tests.e2e.platform import RunningPlatform, wait_for
from tests.models import torchscript_signature

pytestmark = pytest.mark.e2e


def test_stop_then_delete(platform: RunningPlatform, digits: DigitsModels) -> None:
    with platform.client() as c:
        model = c.register_model(digits.onnx_path, name="digits-stop", format="onnx")
        c.deploy("digits-stop", model_id=model["model_id"])
        c.wait_for_state("digits-stop", "started")
        with pytest.raises(ApiError) as busy:
            c.delete("digits-stop")
        assert busy.value.status == 409 and busy.value.code == "invalid_state"
        c.stop("digits-stop")
        stopped = c.wait_for_state("digits-stop", "stopped")
        assert stopped["routing_table"] == {}
        with pytest.raises(ApiError) as refused:
            c.infer("digits-stop", {"input": digits.x[:1]})
        assert refused.value.status == 409
        c.delete("digits-stop")
        with pytest.raises(ApiError) as gone:
            c.get_deployment("digits-stop")
        assert gone.value.status == 404


def test_a_model_that_fails_to_load_fails_the_deployment_not_the_node(
    platform: RunningPlatform, digits: DigitsModels, tmp_path: Path, cleanup: list[str]
) -> None:
    cleanup += ["digits-broken", "digits-alive"]
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"this is not a torchscript archive" * 10)
    with platform.client() as c:
        alive = c.register_model(digits.onnx_path, name="digits-alive", format="onnx")
        c.deploy("digits-alive", model_id=alive["model_id"], allocations=2)
        c.wait_for_state("digits-alive", "started")
        model = c.register_model(
            broken,
            name="broken",
            format="torchscript",
            signature=torchscript_signature().model_dump(mode="json"),
        )
        assert model["files"][0]["sha256"] == hashlib.sha256(broken.read_bytes()).hexdigest()
        c.deploy("digits-broken", model_id=model["model_id"])
        failed = c.wait_for_state("digits-broken", "failed", timeout=60)
        assert failed["reason"], failed
        routes = [r for rs in failed["routing_table"].values() for r in rs]
        assert routes and all(r["routing_state"] == "failed" and r["reason"] for r in routes)
        # Every node is still up and still serving the healthy deployment.
        assert all(p for p in platform.node_pids().values())
        nodes = c.request("GET", "/api/v1/nodes")["nodes"]
        assert all(n["state"] == "ready" for n in nodes), nodes
        out = c.infer("digits-alive", {"input": digits.x[:5]})["logits"]
        assert out.shape == (5, 10)


def test_a_lost_node_has_its_allocations_replanned(
    platform: RunningPlatform, digits: DigitsModels, cleanup: list[str]
) -> None:
    cleanup.append("digits-failover")
    with platform.client() as c:
        model = c.register_model(digits.onnx_path, name="digits-failover", format="onnx")
        c.deploy("digits-failover", model_id=model["model_id"])
        started = c.wait_for_state("digits-failover", "started")
        (victim,) = started["routing_table"].keys()
        os.kill(platform.node_pids()[victim], signal.SIGKILL)

        def moved() -> bool:
            d = c.get_deployment("digits-failover")
            serving = [
                n for n, rs in d["routing_table"].items() if any(r["routing_state"] == "started" for r in rs)
            ]
            return d["state"] == "started" and victim not in d["routing_table"] and bool(serving)

        wait_for("the deployment to start on another node", moved, timeout=30)
        nodes = {n["node_id"]: n["state"] for n in c.request("GET", "/api/v1/nodes")["nodes"]}
        history = c.events("digits-failover")
        out = c.infer("digits-failover", {"input": digits.x[:3]})["logits"]
        assert np.argmax(out, 1).shape == (3,)
        # The platform restarts the node; it comes back and is schedulable again.
        wait_for(
            "the node to come back",
            lambda: (
                {n["node_id"]: n["state"] for n in c.request("GET", "/api/v1/nodes")["nodes"]}[victim]
                == "ready"
            ),
            timeout=30,
        )
    assert nodes[victim] in ("lost", "ready")
    assert any(
        e["type"] == "route.state_changed" and e["node_id"] == victim and e["to_state"] == "stopped"
        for e in history
    )
