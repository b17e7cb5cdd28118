"""The real local platform (`python -m modelfleet up`) as a subprocess, and the deploy steps.

Started like the end-to-end tests start it: a preset admin key (`MODELFLEET_BOOTSTRAP_API_KEY`),
port 0, and the run file `<home>/run/platform.json` telling the gateway's URL and each node's pid.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx

from modelfleet.client import ApiError, Client
from modelfleet.local.launcher import LaunchOptions, LocalPlatform, launch, wait_for

ADMIN_KEY = "mfk_bench:bench-secret-0123456789abcdef"
NODES = 2
# Each node claims 4 processors (the machine has 2 cores) so the memory row can put 4 allocations
# on one node, and the load runs can hold MiniLM's four deployments (1x2 and 2x1, batching off
# and on) at once; only one of them is driven at a time, and each fits the cores.
NODE_PROCESSORS = 4
# Idle deployments with adaptive allocations (min 0) go to zero after this many seconds, checked
# every AUTOSCALE_INTERVAL_S, so the scale-from-zero row does not wait the production default (15
# minutes). Only adaptive deployments are concerned; the others keep their allocations.
SCALE_TO_ZERO_AFTER_S = 3
AUTOSCALE_INTERVAL_S = 0.5


Platform = LocalPlatform


def start_platform(workdir: Path, timeout: float = 120.0) -> Platform:
    """A fresh platform (its home is wiped first) with NODES ready nodes."""
    home = workdir / "home"
    shutil.rmtree(home, ignore_errors=True)
    options = LaunchOptions(
        nodes=NODES,
        node_processors=NODE_PROCESSORS,
        env={
            "MODELFLEET_SCALE_TO_ZERO_AFTER": str(SCALE_TO_ZERO_AFTER_S),
            "MODELFLEET_AUTOSCALE_INTERVAL": str(AUTOSCALE_INTERVAL_S),
        },
    )
    return launch(home, ADMIN_KEY, options, timeout=timeout)


def deploy_and_wait(client: Client, deployment_id: str, timeout: float = 120.0, **spec: Any) -> float:
    """Create a deployment and wait until it is `started`; returns the seconds it took."""
    t0 = time.perf_counter()
    client.deploy(deployment_id, **spec)
    d = client.wait_for_state(deployment_id, "started", "failed", timeout=timeout, interval=0.01)
    elapsed = time.perf_counter() - t0
    if d["state"] != "started":
        raise RuntimeError(f"deployment {deployment_id} failed: {d['reason']}")
    return elapsed


def node_stats(client: Client) -> dict[str, Any]:
    """Every node's live inference counters per route (`deployment/version` -> InferenceStats as
    JSON), read from the nodes' `GET /_stats`: the heartbeat's figures without its delay."""
    out: dict[str, Any] = {}
    for node in client.request("GET", "/api/v1/nodes")["nodes"]:
        if node["state"] == "ready":
            out.update(httpx.get(f"{node['url']}/_stats", timeout=10).json()["routes"])
    return out


def hosting_nodes(client: Client, deployment_id: str) -> list[str]:
    return sorted(client.get_deployment(deployment_id)["routing_table"])


def remove(client: Client, deployment_id: str) -> None:
    """Delete a deployment (force: it may be started), then wait until it is gone."""
    client.delete(deployment_id, force=True)

    def gone() -> bool:
        try:
            client.get_deployment(deployment_id)
        except ApiError as e:
            return e.status == 404
        return False

    wait_for(f"deployment {deployment_id} to be deleted", gone, timeout=30)
