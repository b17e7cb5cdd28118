"""State survives a clean restart and a kill -9 of the platform: models, deployments, nodes and
API keys come back, and the deployment serves again."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import DigitsModels
from tests.e2e.platform import start_platform, wait_for

pytestmark = pytest.mark.e2e


def test_state_survives_sigint_and_kill_9(tmp_path: Path, digits: DigitsModels) -> None:
    home = tmp_path / "home"
    p = start_platform(home)
    try:
        with p.client() as c:
            model = c.register_model(digits.onnx_path, name="digits-durable", format="onnx")
            c.deploy("digits-durable", model_id=model["model_id"])
            c.wait_for_state("digits-durable", "started")
            key = c.request("POST", "/api/v1/keys", json={"name": "infer-only", "roles": ["infer"]})[
                "api_key"
            ]
            before = c.infer("digits-durable", {"input": digits.x[:10]})["logits"]
    finally:
        p.stop(signal.SIGINT)

    for sig in (signal.SIGINT, signal.SIGKILL):
        p = start_platform(home)
        try:
            with p.client(key) as infer_only:

                def serving() -> bool:
                    return infer_only.get_deployment("digits-durable")["state"] == "started"

                wait_for("the deployment to serve again", serving, timeout=60)
                after = infer_only.infer("digits-durable", {"input": digits.x[:10]})["logits"]
                np.testing.assert_allclose(after, before, rtol=1e-6)
            with p.client() as c:
                assert c.get_model(model["model_id"])["state"] == "ready"
                nodes = {n["node_id"] for n in c.request("GET", "/api/v1/nodes")["nodes"]}
                assert nodes == {"node-1", "node-2"}
                assert any(k["name"] == "infer-only" for k in c.request("GET", "/api/v1/keys")["keys"])
        finally:
            p.stop(sig)
