"""The `modelfleet` command against the real local platform: push, deploy from YAML, invoke,
logs, keys, nodes, events, status, and `up --detach` / `down`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from modelfleet.cli.output import Exit
from modelfleet.examples.digits import build_example, sample_row
from modelfleet.sdk import Client
from tests.e2e.platform import ADMIN_KEY, RunningPlatform, wait_for

pytestmark = pytest.mark.e2e


def cli(
    platform: RunningPlatform | None,
    *args: str,
    key: str | None = ADMIN_KEY,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MODELFLEET_")}
    environ.update(COLUMNS="200", MODELFLEET_CONFIG="/nonexistent", MODELFLEET_CREDENTIALS="/nonexistent")
    if platform is not None:
        environ["MODELFLEET_ENDPOINT"] = platform.url
        if platform.ca_file:
            environ["MODELFLEET_CA_FILE"] = platform.ca_file
    if key:
        environ["MODELFLEET_API_KEY"] = key
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "modelfleet", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_example(tmp_path_factory.mktemp("cli-digits"))


def test_push_deploy_invoke_and_inspect(
    platform: RunningPlatform, digits_onnx: Path, tmp_path: Path, cleanup: list[str]
) -> None:
    name = f"cli-{uuid.uuid4().hex[:6]}"
    cleanup.append(name)
    pushed = cli(platform, "models", "push", str(digits_onnx), "--name", "digits", "--model-id", f"{name}-m")
    assert pushed.returncode == Exit.OK, pushed.stderr
    assert f"{name}-m" in pushed.stdout and "sha256:" in pushed.stdout

    spec = tmp_path / "spec.yaml"
    spec.write_text(f"kind: deployment\ndeployment_id: {name}\nmodel_id: {name}-m\nallocations: 1\n")
    deployed = cli(platform, "deploy", str(spec))
    assert deployed.returncode == Exit.OK, deployed.stderr
    assert "started" in deployed.stdout

    again = cli(platform, "--json", "deploy", str(spec))  # declarative: applying it again changes nothing
    assert again.returncode == Exit.OK, again.stderr
    assert json.loads(again.stdout)[0]["state"] == "started"

    row = json.dumps([sample_row()])
    invoked = cli(platform, "--json", "invoke", name, "-i", f"input={row}")
    assert invoked.returncode == Exit.OK, invoked.stderr
    answer = json.loads(invoked.stdout)
    logits = next(o for o in answer["outputs"] if o["name"] == "logits")
    assert logits["shape"] == [1, 10] and answer["latency_ms"] > 0 and answer["correlation_id"]
    human = cli(platform, "invoke", name, "-i", f"input={row}")
    assert "argmax" in human.stdout and "correlation id" in human.stdout

    status = cli(platform, "--json", "status")
    assert status.returncode == Exit.OK, status.stderr
    body = json.loads(status.stdout)
    mine = next(d for d in body["deployments"] if d["deployment_id"] == name)
    assert mine["state"] == "started" and sum(len(r) for r in mine["routing_table"].values()) >= 1
    assert any(n["state"] == "ready" for n in body["nodes"])

    events = cli(platform, "events", name)
    assert "pending -> starting" in events.stdout and "starting -> started" in events.stdout

    nodes = cli(platform, "--json", "nodes")
    assert len(json.loads(nodes.stdout)) == platform.nodes

    executions = cli(platform, "--json", "executions")  # pipeline executions: none in this project
    assert executions.returncode == Exit.OK and json.loads(executions.stdout) == [], executions.stderr

    missing = cli(platform, "invoke", "no-such-deployment", "--data", '{"inputs": []}')
    assert missing.returncode == Exit.NOT_FOUND and "deployment_not_found" in missing.stderr


def test_a_spec_error_names_line_and_field_and_a_failed_deploy_its_reason(
    platform: RunningPlatform, tmp_path: Path, cleanup: list[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("deployment_id: x\nmodel_id: m\nthreads_per_allocation: 3\n")
    result = cli(platform, "deploy", str(bad))
    assert result.returncode == Exit.USAGE
    assert f"{bad}:3: threads_per_allocation:" in result.stderr.replace("\n", "")

    name = f"cli-bad-{uuid.uuid4().hex[:6]}"
    cleanup.append(name)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not an onnx model" * 10)
    spec = tmp_path / "junk.yaml"
    spec.write_text(f"deployment_id: {name}\nmodel: {{path: junk.onnx, name: junk}}\n")
    failed = cli(platform, "deploy", str(spec))
    # an ONNX file that does not parse is refused at commit (400) or fails to load (failed)
    assert failed.returncode in (Exit.USAGE, Exit.FAILED), failed.stderr
    assert "error" in failed.stderr or "failed" in failed.stderr


def test_keys_create_list_revoke(platform: RunningPlatform) -> None:
    created = cli(platform, "--json", "keys", "create", "--role", "infer", "--name", "cli-test")
    assert created.returncode == Exit.OK, created.stderr
    body = json.loads(created.stdout)
    key_id, secret = body["key"]["key_id"], body["api_key"]
    assert secret.startswith(key_id + ":")

    listed = json.loads(cli(platform, "--json", "keys", "list").stdout)
    assert any(k["key_id"] == key_id and k["state"] == "active" for k in listed)

    forbidden = cli(platform, "keys", "list", key=secret)  # an infer key may not manage keys
    assert forbidden.returncode == Exit.AUTH

    revoked = cli(platform, "keys", "revoke", key_id)
    assert revoked.returncode == Exit.OK and "revoked" in revoked.stdout
    refused = cli(platform, "nodes", key=secret)
    assert refused.returncode == Exit.AUTH


def test_logs_filter_by_node(platform: RunningPlatform) -> None:
    result = cli(platform, "logs", "node-1", "--home", str(platform.home), "--tail", "0")
    assert result.returncode == Exit.OK, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all("node-1" in line for line in lines)
    assert not any(" node-2 " in line for line in lines)
    missing = cli(platform, "logs", "--home", str(platform.home / "nowhere"))
    assert missing.returncode == Exit.NOT_FOUND


def failing_model(path: Path) -> Path:
    """An ONNX model whose run fails for a batch of one: 4 values cannot be reshaped to [3, -1]."""
    import onnx
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [3, -1])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "fails",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, "m"])],
        initializer=[shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_correlation_id_follows_a_failed_request_into_the_node_log(
    platform: RunningPlatform, tmp_path: Path, cleanup: list[str]
) -> None:
    name = f"cli-fails-{uuid.uuid4().hex[:6]}"
    cleanup.append(name)
    with Client(platform.url, ADMIN_KEY, ca_file=platform.ca_file) as c:
        model = c.push_model(failing_model(tmp_path / "fails.onnx"), name="fails", format="onnx")
        c.create_deployment(deployment_id=name, model_id=model.model_id, max_batch_size=1)
        c.wait_until_started(name, timeout=90)
        correlation = f"corr-{uuid.uuid4().hex}"
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]}]}
        r = c.send_raw(
            "POST", f"/v2/models/{name}/infer", json=body, headers={"x-correlation-id": correlation}
        )
    assert r.status_code == 500, r.text
    assert r.headers["x-correlation-id"] == correlation

    def logged() -> list[str]:
        found = cli(
            platform, "logs", "--home", str(platform.home), "--tail", "0", "--correlation-id", correlation
        )
        return found.stdout.splitlines()

    lines = wait_for("the node to log the failed request", logged, timeout=15)
    assert any("inference failed with 500" in line and "node-" in line for line in lines), lines


def test_up_detached_then_status_then_down(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"MODELFLEET_BOOTSTRAP_API_KEY": ADMIN_KEY, "MODELFLEET_HOME": str(home)}
    up = cli(
        None,
        "up",
        "--detach",
        "--port",
        "0",
        "--nodes",
        "1",
        "--no-example",
        "--heartbeat-interval",
        "0.5",
        env=env,
        timeout=150,
    )
    try:
        assert up.returncode == Exit.OK, up.stdout + up.stderr + (home / "logs" / "platform.log").read_text()
        status = cli(None, "--json", "status", env=env)  # the endpoint comes from HOME's run file
        assert status.returncode == Exit.OK, status.stderr
        assert json.loads(status.stdout)["endpoint"].startswith("http")
    finally:
        down = cli(None, "down", env=env, timeout=90)
    assert down.returncode == Exit.OK, down.stderr
    assert not (home / "run" / "platform.json").exists()
    assert "modelfleet stopped" in (home / "logs" / "platform.log").read_text()
    assert cli(None, "down", env=env).returncode == Exit.OK  # nothing running: nothing to do
