"""The node's `infer` op over its data port, and its HTTP `/infer`, on a real loaded model."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from starlette.testclient import TestClient

from modelfleet.core.lifecycle import RoutingState
from modelfleet.gateway.node_link import Frame, NodeLink, encode_fields
from modelfleet.worker.agent import LocalRoute, NodeAgent
from modelfleet.worker.data_ops import default_ops
from modelfleet.worker.data_server import DataServer
from modelfleet.worker.loaded import LoadedDeployment
from modelfleet.worker.server import create_worker_app
from schemas.nodes import NodeRegister
from tests.unit import onnx_builders
from tests.unit.test_batcher import WAIT, Gated, _assignment, _onnx


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[NodeAgent, DataServer, Path]]:
    model_path = onnx_builders.linear(tmp_path / "linear.onnx")
    registration = NodeRegister(node_id="n1", processors=2, memory_bytes=2**30, url="http://127.0.0.1:9")
    agent = NodeAgent(registration, "http://127.0.0.1:9", "k:s", tmp_path)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = DataServer(sock, default_ops(agent, 10_000))
    server.start()
    yield agent, server, model_path
    server.stop()
    agent.stop()


def _serve(agent: NodeAgent, loaded: LoadedDeployment) -> None:
    agent.routes[("u", "1")] = LocalRoute(loaded.assignment, RoutingState.STARTED, loaded=loaded)


def _call(server: DataServer, fields: dict[str, str], body: bytes) -> Frame:
    async def go() -> Frame:
        link = NodeLink(server.address)
        try:
            return await link.call(encode_fields({"op": "infer", **fields}), body, WAIT)
        finally:
            link.close()

    return asyncio.run(go())


def _json_body(x: np.ndarray, **extra: Any) -> bytes:
    tensor = {"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}
    return orjson.dumps({"inputs": [tensor], **extra})


def test_infer_json_and_binary(node: tuple[NodeAgent, DataServer, Path]) -> None:
    agent, server, path = node
    loaded = LoadedDeployment.load(_assignment(1), path)
    _serve(agent, loaded)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    expected = loaded.model.run({"x": x})["y"]

    answer = _call(server, {"uid": "u", "version": "1", "timeout_ms": "60000"}, _json_body(x, id="r1"))
    assert answer.status == 200 and answer.fields["content-type"] == "application/json"
    doc = orjson.loads(answer.body)
    assert doc["id"] == "r1" and doc["model_name"] == "d" and doc["model_version"] == "1"
    np.testing.assert_allclose(np.array(doc["outputs"][0]["data"]).reshape(2, 3), expected, rtol=1e-6)

    header = orjson.dumps(
        {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [2, 4], "parameters": {"binary_data_size": 32}}
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    fields = {"uid": "u", "version": "1", "inference-header-content-length": str(len(header))}
    answer = _call(server, fields, header + x.tobytes())
    assert answer.status == 200
    json_length = int(answer.fields["inference-header-content-length"])
    out = orjson.loads(bytes(answer.body[:json_length]))["outputs"][0]
    y = np.frombuffer(bytes(answer.body[json_length:]), np.float32).reshape(out["shape"])
    np.testing.assert_allclose(y, expected, rtol=1e-6)

    assert agent.loaded_of("u") == [loaded] and agent.loaded_of("other") == []
    stats = next(r.stats for r in agent._reports())  # what the next heartbeat carries
    assert stats is not None and stats.inference_count == 2 and stats.last_access_ms is not None


def test_infer_errors(node: tuple[NodeAgent, DataServer, Path]) -> None:
    agent, server, path = node
    assignment = _assignment(1).model_copy(update={"queue_capacity": 1})
    gate = Gated(_onnx(path))
    loaded = LoadedDeployment(assignment, gate)
    _serve(agent, loaded)
    x = np.ones((1, 4), np.float32)
    ids = {"uid": "u", "version": "1"}

    missing = _call(server, {"uid": "u", "version": "2"}, _json_body(x))
    assert missing.status == 503 and missing.fields["retry-after"] == "1"
    assert orjson.loads(missing.body)["code"] == "not_loaded"

    wrong = _call(server, ids, _json_body(np.ones((1, 5), np.float32)))
    assert wrong.status == 400
    assert (
        "FP32[-1,4]" in orjson.loads(wrong.body)["error"] and "FP32[1,5]" in orjson.loads(wrong.body)["error"]
    )
    bad_header = _call(server, {**ids, "inference-header-content-length": "x"}, _json_body(x))
    assert bad_header.status == 400

    expired = _call(server, {**ids, "timeout_ms": "0"}, _json_body(x))
    assert expired.status == 504 and orjson.loads(expired.body)["code"] == "inference_timeout"

    async def queue_full() -> list[Frame]:
        link = NodeLink(server.address)
        fields = encode_fields({"op": "infer", **ids})
        held = asyncio.ensure_future(link.call(fields, _json_body(x), WAIT))
        assert await asyncio.to_thread(gate.entered.wait, WAIT)  # one runs (held) ...
        queued = asyncio.ensure_future(link.call(fields, _json_body(x), WAIT))
        while loaded.pending < 2:  # ... one waits in the queue of one (bounded by WAIT) ...
            await asyncio.sleep(0.001)
        refused = await link.call(fields, _json_body(x), WAIT)  # ... so the next is refused
        gate.release.set()
        answers = [refused, await held, await queued]
        link.close()
        return answers

    refused, held, queued = asyncio.run(asyncio.wait_for(queue_full(), WAIT))
    assert refused.status == 429 and refused.fields["retry-after"] == "1"
    assert held.status == 200 and queued.status == 200
    stats = loaded.stats_snapshot()
    assert stats.rejected_execution_count == 1 and stats.timeout_count == 1 and stats.error_count == 2
    loaded.close()


def test_the_http_route_still_serves(node: tuple[NodeAgent, DataServer, Path]) -> None:
    agent, _, path = node
    loaded = LoadedDeployment.load(_assignment(1), path)
    _serve(agent, loaded)
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    with TestClient(create_worker_app(agent, 10_000)) as http:
        ok = http.post("/infer/u/1", content=_json_body(x))
        assert ok.status_code == 200
        out = ok.json()["outputs"][0]
        np.testing.assert_allclose(
            np.array(out["data"]).reshape(1, 3), loaded.model.run({"x": x})["y"], rtol=1e-6
        )
        assert http.post("/infer/u/9", content=_json_body(x)).status_code == 503
        bad = http.post("/infer/u/1", content=b"{oops")
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"
        stats = http.get("/_stats").json()["routes"][f"{loaded.assignment.deployment_id}/1"]
        assert stats["inference_count"] == 1 and stats["error_count"] == 1
        assert stats["batches"] == 1 and stats["batched_requests"] == 1
        assert [n for n, _ in stats["recent_runs"]] == [1]
