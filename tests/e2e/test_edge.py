"""Edge nodes and edge services end to end: real `python -m edge_agent` processes against the local
platform (its own, with edge nodes counted offline after 3 s and no worker nodes).

One device (the seed's node id) sits behind a TCP proxy the tests cut to take it offline; three more
devices form a small fleet for wave rollouts and an aborted rollout.
"""

from __future__ import annotations

import os
import ssl
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import httpx
import numpy as np
import pytest

from modelfleet.client import ApiError, Client
from modelfleet.resources import Names
from tests.e2e.platform import PLATFORM_KEY, STARTED, RunningPlatform, start_platform, wait_for
from tests.edge_support import AgentProcess, TcpProxy, scale_model

pytestmark = pytest.mark.e2e

SEED_NODE = "2r8c4fb9-t497-40u3-89yf-skui77db0472"
X = np.arange(8, dtype=np.float32).reshape(2, 4)


@dataclass
class Models:
    v1: str
    v2: str
    v3: str
    poisoned: str
    tampered: str


@dataclass
class Edge:
    platform: RunningPlatform
    client: Client
    models: Models
    proxy: TcpProxy
    device: AgentProcess  # the seed's node, behind the proxy
    fleet: list[AgentProcess]
    fleet_ids: list[str]


def _token(c: Client, node_id: str | None = None) -> dict[str, Any]:
    body = {"node_id": node_id} if node_id else {}
    doc: dict[str, Any] = c.request("POST", "/api/v1/edge/registration-tokens", json=body)
    return doc


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    home = tmp_path_factory.mktemp("edge-platform")
    platform = start_platform(
        home, {"MODELFLEET_EDGE_OFFLINE_AFTER": "3", "MODELFLEET_TLS": "self-signed"}, nodes=0
    )
    agents: list[AgentProcess] = []
    proxy = None
    try:
        c = platform.client()
        d = tmp_path_factory.mktemp("edge-models")
        ids = {}
        for label, factor, poisoned in (
            ("v1", 1.0, False),
            ("v2", 2.0, False),
            ("v3", 3.0, False),
            ("poisoned", 5.0, True),
            ("tampered", 7.0, False),
        ):
            path = scale_model(d / f"{label}.onnx", factor, poisoned)
            ids[label] = c.register_model(path, name=f"scale-{label}", format="onnx")
        # One byte of the stored object changes after commit: the digest no longer matches.
        s3 = boto3.client(
            "s3",
            endpoint_url=platform.aws_endpoint,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        key = ids["tampered"]["files"][0]["s3_key"]
        data = bytearray(s3.get_object(Bucket=Names().bucket("artifacts"), Key=key)["Body"].read())
        data[-1] ^= 0x01
        s3.put_object(Bucket=Names().bucket("artifacts"), Key=key, Body=bytes(data))
        models = Models(**{k: v["model_id"] for k, v in ids.items()})

        url = urlparse(platform.url)
        proxy = TcpProxy(url.hostname or "127.0.0.1", url.port or 80)
        devices = tmp_path_factory.mktemp("devices")
        ca = platform.ca_file
        seed_token = _token(c, SEED_NODE)["token"]
        device = AgentProcess(
            devices / "seed", f"https://127.0.0.1:{proxy.port}", seed_token, "seed", ca
        ).start()
        agents.append(device)
        fleet = []
        for i in range(3):
            agent = AgentProcess(
                devices / f"n{i}", platform.url, _token(c, f"fleet-{i}")["token"], f"n{i}", ca
            )
            fleet.append(agent.start())
            agents.append(agent)
        wait_for(
            "every device to register", lambda: len(c.request("GET", "/api/v1/edge/nodes")["nodes"]) == 4
        )
        yield Edge(platform, c, models, proxy, device, fleet, [f"fleet-{i}" for i in range(3)])
    finally:
        for a in agents:
            a.stop()
        if proxy is not None:
            proxy.cut()
        platform.stop()
        STARTED.remove(platform)


def _serving(agent: AgentProcess, name: str, model_id: str, timeout: float = 30.0) -> None:
    wait_for(
        f"{agent.name} to serve {model_id}",
        lambda: agent.status()["serving"].get(name) == model_id,
        timeout=timeout,
    )


def _service(c: Client, service_id: str) -> dict[str, Any]:
    doc: dict[str, Any] = c.request("GET", f"/api/v1/edge/services/{service_id}")
    return doc


def _rollout_done(c: Client, service_id: str) -> dict[str, Any] | None:
    r = _service(c, service_id)["rollout"]
    return r if r and r["state"] != "in_progress" else None


# --- registration and node credentials ----------------------------------------------------------


def test_registration_node_keys_and_foreign_ids(edge: Edge) -> None:
    c = edge.client
    ident = edge.device.data_dir / "identity.json"
    assert stat.S_IMODE(os.stat(ident).st_mode) == 0o600
    token = _token(c)
    trust = ssl.create_default_context(cafile=edge.platform.ca_file)
    with httpx.Client(base_url=edge.platform.url, timeout=10, verify=trust) as h:
        reg = h.post(
            "/api/v1/edge/nodes",
            json={"name": "probe"},
            headers={"authorization": f"Bearer {token['token']}"},
        )
        assert reg.status_code == 201, reg.text
        node = reg.json()
        again = h.post("/api/v1/edge/nodes", json={}, headers={"authorization": f"Bearer {token['token']}"})
        assert again.status_code == 401  # one-time: the token is spent
        key = {"authorization": f"Bearer {node['node_key']}"}
        assert h.get(f"/api/v1/edge/nodes/{node['node_id']}/desired", headers=key).status_code == 200
        # another node's ids, and a node's key on operator routes
        assert h.get(f"/api/v1/edge/nodes/{SEED_NODE}/desired", headers=key).status_code == 404
        assert (
            h.post(f"/api/v1/edge/nodes/{SEED_NODE}/status", json={"revision": 0}, headers=key).status_code
            == 404
        )
        assert h.get("/api/v1/edge/nodes", headers=key).status_code == 403
        # another project's node ids answer 404 too
        with Client(edge.platform.url, PLATFORM_KEY, ca_file=edge.platform.ca_file) as platform_admin:
            other = platform_admin.request("POST", "/api/v1/projects", json={"project_id": "edge-other"})
        with Client(edge.platform.url, other["admin_key"]["api_key"], ca_file=edge.platform.ca_file) as oc:
            foreign = oc.request("POST", "/api/v1/edge/registration-tokens", json={})
        freg = h.post("/api/v1/edge/nodes", json={}, headers={"authorization": f"Bearer {foreign['token']}"})
        fkey = {"authorization": f"Bearer {freg.json()['node_key']}"}
        assert h.get(f"/api/v1/edge/nodes/{node['node_id']}/desired", headers=fkey).status_code == 404
        with (
            Client(edge.platform.url, other["admin_key"]["api_key"], ca_file=edge.platform.ca_file) as oc,
            pytest.raises(ApiError) as refused,
        ):
            oc.request(
                "POST",
                "/api/v1/edge/services",
                json={
                    "service_name": "steal",
                    "config": [{"model_id": edge.models.v1, "nodes": [SEED_NODE]}],
                },
            )
        assert refused.value.code == "unknown_edge_nodes"
        # rotation: the old key stops at once, the new one works
        rotated = h.post(f"/api/v1/edge/nodes/{node['node_id']}/key", headers=key)
        assert rotated.status_code == 200
        new_key = {"authorization": f"Bearer {rotated.json()['node_key']}"}
        assert h.get(f"/api/v1/edge/nodes/{node['node_id']}/desired", headers=key).status_code == 401
        assert h.get(f"/api/v1/edge/nodes/{node['node_id']}/desired", headers=new_key).status_code == 200
        # deregistration: the credential stops working at once
        c.request("DELETE", f"/api/v1/edge/nodes/{node['node_id']}")
        assert h.get(f"/api/v1/edge/nodes/{node['node_id']}/desired", headers=new_key).status_code == 401


def test_the_agent_verifies_the_control_planes_certificate(edge: Edge, tmp_path: Path) -> None:
    """Without the CA file the self-signed gateway is refused (never trusted blindly): the token is
    not spent and the agent keeps retrying; the fleet above registered with --ca-file."""
    token = _token(edge.client)
    agent = AgentProcess(tmp_path / "untrusting", edge.platform.url, token["token"], "untrusting").start()
    try:
        wait_for("a refused certificate", lambda: "CERTIFICATE_VERIFY_FAILED" in agent.log(), timeout=20)
        assert agent.status()["node_id"] is None
    finally:
        agent.stop()
    assert len(edge.client.request("GET", "/api/v1/edge/nodes")["nodes"]) == 4


def test_unknown_nodes_are_refused_at_creation(edge: Edge) -> None:
    with pytest.raises(ApiError) as refused:
        edge.client.request(
            "POST",
            "/api/v1/edge/services",
            json={
                "service_name": "ghost",
                "config": [{"model_id": edge.models.v1, "nodes": ["no-such-node"]}],
            },
        )
    assert refused.value.status == 400 and refused.value.code == "unknown_edge_nodes"


# --- the seed's sample, sync, swap, local inference ---------------------------------------------------


def _seed_sample(model_id: str) -> dict[str, Any]:
    return {
        "service_name": "service-edge-demo",
        "description": "",
        "infer_type": "edge",
        "config": [
            {
                "model_id": model_id,
                "specification": "custom",
                "instance_count": 1,
                "custom_spec": {"cpu": 1.5, "memory": 7500, "gpu_p4": 0, "ascend_a310": 0},
                "envs": {},
                "nodes": [SEED_NODE],
            }
        ],
    }


@pytest.fixture(scope="module")
def demo(edge: Edge) -> str:
    """The seed's edge sample request, verbatim, through the service face (`POST /v1/{project}/services`,
    whose `edge` backend is modelfleet.faces.service.edge)."""
    created = edge.client.request("POST", "/v1/default/services", json=_seed_sample(edge.models.v1))
    assert set(created) == {"service_id", "resource_ids"}
    return str(created["service_id"])


def test_seed_sample_syncs_and_serves_locally(edge: Edge, demo: str) -> None:
    _serving(edge.device, "service-edge-demo", edge.models.v1)
    np.testing.assert_allclose(edge.device.infer("service-edge-demo", X), X * 1.0)
    wait_for("the service to run", lambda: _service(edge.client, demo)["status"] == "running", timeout=15)
    face = edge.client.request("GET", f"/v1/default/services/{demo}")
    assert face["status"] == "running" and face["infer_type"] == "edge"
    # the native route takes the same body (another name: service names are unique)
    native = edge.client.request(
        "POST",
        "/api/v1/edge/services",
        json={**_seed_sample(edge.models.v1), "service_name": "service-edge-native"},
    )
    _serving(edge.device, "service-edge-native", edge.models.v1)
    edge.client.request("DELETE", f"/api/v1/edge/services/{native['service_id']}")
    wait_for(
        "the native copy to unload", lambda: "service-edge-native" not in edge.device.status()["serving"]
    )


def test_swap_keeps_serving_and_rolls_on(edge: Edge, demo: str) -> None:
    _serving(edge.device, "service-edge-demo", edge.models.v1)
    errors: list[str] = []
    seen: set[float] = set()
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                seen.add(float(edge.device.infer("service-edge-demo", np.ones((1, 4), np.float32))[0, 0]))
            except Exception as e:
                errors.append(repr(e))

    t = threading.Thread(target=hammer)
    t.start()
    try:
        edge.client.request(
            "PUT",
            f"/api/v1/edge/services/{demo}",
            json={"config": [{"model_id": edge.models.v2, "nodes": [SEED_NODE]}]},
        )
        _serving(edge.device, "service-edge-demo", edge.models.v2)
        wait_for("a request on v2", lambda: 2.0 in seen, timeout=10)
    finally:
        stop.set()
        t.join()
    assert errors == []
    assert seen == {1.0, 2.0}
    done = wait_for("the rollout to finish", lambda: _rollout_done(edge.client, demo), timeout=20)
    assert done["state"] == "completed" and done["entries"][0]["progress"] == "updated"
    # N-1 kept on disk for rollback
    assert (edge.device.data_dir / "models" / edge.models.v1).is_dir()


def test_tampered_artifact_is_refused_and_the_old_version_serves(edge: Edge, demo: str) -> None:
    _serving(edge.device, "service-edge-demo", edge.models.v2)
    edge.client.request(
        "PUT",
        f"/api/v1/edge/services/{demo}",
        json={"config": [{"model_id": edge.models.tampered, "nodes": [SEED_NODE]}]},
    )
    done = wait_for("the rollout to end", lambda: _rollout_done(edge.client, demo), timeout=30)
    assert done["state"] == "aborted"
    assert "sha256" in done["entries"][0]["reason"] or "sha256" in done["reason"]
    assert edge.device.status()["refused"] >= 1
    assert not (edge.device.data_dir / "models" / edge.models.tampered).exists()
    np.testing.assert_allclose(edge.device.infer("service-edge-demo", X), X * 2.0)
    assert edge.models.tampered not in edge.device.status()["activations"]


# --- offline-first --------------------------------------------------------------------------------------


def test_offline_serving_restart_without_network_and_convergence(edge: Edge, demo: str) -> None:
    c, device = edge.client, edge.device
    wait_for("the service to settle", lambda: _rollout_done(c, demo), timeout=30)
    _serving(device, "service-edge-demo", edge.models.v2)
    edge.proxy.cut()
    try:
        wait_for(
            "the node to show offline",
            lambda: any(
                n["node_id"] == SEED_NODE and n["state"] == "offline"
                for n in c.request("GET", "/api/v1/edge/nodes")["nodes"]
            ),
            timeout=15,
        )
        np.testing.assert_allclose(device.infer("service-edge-demo", X), X * 2.0)
        # restart without network: serves the last good state from disk
        device.stop()
        device.start()
        np.testing.assert_allclose(device.infer("service-edge-demo", X), X * 2.0)
        assert device.status()["connected"] is False
        # two revisions while it is away: the rollout marks it offline, never stuck in progress
        for model in (edge.models.v3, edge.models.v1):
            c.request(
                "PUT",
                f"/api/v1/edge/services/{demo}",
                json={"config": [{"model_id": model, "nodes": [SEED_NODE]}]},
            )
            done = wait_for("the rollout to finish", lambda: _rollout_done(c, demo), timeout=20)
            assert done["state"] == "completed" and done["entries"][0]["progress"] == "offline"
        assert _service(c, demo)["status"] in ("concerning", "failed")
    finally:
        edge.proxy.restore()
    _serving(device, "service-edge-demo", edge.models.v1, timeout=30)
    np.testing.assert_allclose(device.infer("service-edge-demo", X), X * 1.0)
    assert edge.models.v3 not in device.status()["activations"]  # the stale revision was skipped
    wait_for("the service to run again", lambda: _service(c, demo)["status"] == "running", timeout=15)
    r = _service(c, demo)["rollout"]
    assert r["entries"][0]["progress"] == "updated"


# --- fleet rollouts ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet_service(edge: Edge) -> str:
    created = edge.client.request(
        "POST",
        "/api/v1/edge/services",
        json={"service_name": "fleet", "config": [{"model_id": edge.models.v1, "nodes": edge.fleet_ids}]},
    )
    for a in edge.fleet:
        _serving(a, "fleet", edge.models.v1)
    return str(created["service_id"])


def test_wave_rollout_honours_max_unavailable(edge: Edge, fleet_service: str) -> None:
    c = edge.client
    c.request(
        "PUT",
        f"/api/v1/edge/services/{fleet_service}",
        json={
            "config": [{"model_id": edge.models.v2, "nodes": edge.fleet_ids}],
            "rollout": {"max_unavailable": 2},
        },
    )
    most_updating = 0

    def finished() -> dict[str, Any] | None:
        nonlocal most_updating
        r = _service(c, fleet_service)["rollout"]
        most_updating = max(most_updating, sum(e["progress"] == "updating" for e in r["entries"]))
        return r if r["state"] != "in_progress" else None

    done = wait_for("the wave rollout", finished, timeout=40, interval=0.1)
    assert done["state"] == "completed"
    assert most_updating <= 2
    waves = sorted(e["wave"] for e in done["entries"])
    assert waves == [1, 1, 2]
    assert all(e["progress"] == "updated" for e in done["entries"])
    for a in edge.fleet:
        np.testing.assert_allclose(a.infer("fleet", X), X * 2.0)


def test_aborted_rollout_rolls_back(edge: Edge, fleet_service: str) -> None:
    c = edge.client
    wait_for("no rollout running", lambda: _rollout_done(c, fleet_service), timeout=40)
    c.request(
        "PUT",
        f"/api/v1/edge/services/{fleet_service}",
        json={
            "config": [{"model_id": edge.models.poisoned, "nodes": edge.fleet_ids}],
            "rollout": {"max_unavailable": 1, "abort_failure_percent": 50, "abort_min_nodes": 1},
        },
    )
    done = wait_for("the rollout to abort", lambda: _rollout_done(c, fleet_service), timeout=40)
    assert done["state"] == "aborted"
    started = [e for e in done["entries"] if e["wave"] > 0]
    assert len(started) == 1 and started[0]["progress"] == "rolled_back"
    assert "health check failed" in started[0]["reason"]
    assert sum(e["progress"] == "pending" for e in done["entries"]) == 2
    for a in edge.fleet:
        np.testing.assert_allclose(a.infer("fleet", X), X * 2.0)
        assert edge.models.poisoned not in a.status()["activations"]
    svc = _service(c, fleet_service)
    assert {n["model_id"] for n in svc["nodes"]} == {edge.models.v2}
    events = c.request("GET", f"/api/v1/edge/services/{fleet_service}/events")["events"]
    assert any(e["type"] == "edge_service.state_changed" for e in events)
    wait_for("the service to run", lambda: _service(c, fleet_service)["status"] == "running", timeout=15)
