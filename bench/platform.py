"""The real local platform (`python -m modelfleet up`) as a subprocess, and the deploy steps.

Started like the end-to-end tests start it: a preset admin key (`MODELFLEET_BOOTSTRAP_API_KEY`),
port 0, and the run file `<home>/run/platform.json` telling the gateway's URL and each node's pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

from modelfleet.client import ApiError, Client

T = TypeVar("T")

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


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.05) -> T:
    """Poll `check` until it returns something truthy; TimeoutError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # keep polling; the last error goes into the timeout message
            last = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" ({last})" if last else ""))


@dataclass
class Platform:
    home: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    key: str = ADMIN_KEY
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return str(self.info["url"])

    def refresh(self) -> dict[str, Any]:
        self.info = json.loads((self.home / "run" / "platform.json").read_text())
        return self.info

    def node_pids(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.refresh()["nodes"].items()}

    def node_rss(self, node_id: str) -> int:
        """RSS of the node process plus any processes it started (the model lives in the node)."""
        proc = psutil.Process(self.node_pids()[node_id])
        return sum(int(p.memory_info().rss) for p in [proc, *proc.children(recursive=True)])

    def client(self) -> Client:
        return Client(self.url, self.key, timeout=120)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_platform(workdir: Path, timeout: float = 120.0) -> Platform:
    """A fresh platform (its home is wiped first) with NODES ready nodes."""
    home = workdir / "home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = dict(
        os.environ,
        MODELFLEET_BOOTSTRAP_API_KEY=ADMIN_KEY,
        MODELFLEET_SCALE_TO_ZERO_AFTER=str(SCALE_TO_ZERO_AFTER_S),
        MODELFLEET_AUTOSCALE_INTERVAL=str(AUTOSCALE_INTERVAL_S),
        PYTHONUNBUFFERED="1",
    )
    log_path = workdir / "platform.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelfleet",
                "up",
                "--home",
                str(home),
                "--port",
                "0",
                "--no-example",
                "--nodes",
                str(NODES),
                "--node-processors",
                str(NODE_PROCESSORS),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    platform = Platform(home=home, proc=proc, log_path=log_path)

    def serving() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the platform exited early:\n{platform.log_tail()}")
        if not (home / "run" / "platform.json").exists():
            return False
        info = platform.refresh()
        return bool(info.get("url")) and len(info.get("nodes", {})) == NODES

    try:
        wait_for("the platform to serve", serving, timeout)
        with platform.client() as c:
            wait_for(
                "every node to register",
                lambda: (
                    sum(n["state"] == "ready" for n in c.request("GET", "/api/v1/nodes")["nodes"]) == NODES
                ),
                timeout,
            )
    except BaseException:
        platform.stop()
        raise
    return platform


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
