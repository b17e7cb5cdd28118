"""Starting and stopping the real local platform (`python -m modelfleet up`) for tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from modelfleet.client import Client

T = TypeVar("T")

ADMIN_KEY = "mfk_e2eadmin:e2e-admin-secret-0123456789abcdef"

# Platforms started by the running test, so a failure report can show their logs.
STARTED: list[RunningPlatform] = []


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # keep polling; report the last error on timeout
            last_error = e
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout}s waiting for {what}"
        + (f" (last error: {last_error})" if last_error else "")
    )


@dataclass
class RunningPlatform:
    home: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    admin_key: str = ADMIN_KEY
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def aws_endpoint(self) -> str:
        return str(self.info["aws_endpoint"])

    def refresh(self) -> dict[str, Any]:
        self.info = json.loads((self.home / "run" / "platform.json").read_text())
        return self.info

    def node_pids(self) -> dict[str, int]:
        return dict(self.refresh()["nodes"])

    def client(self, key: str | None = None) -> Client:
        return Client(self.url, key or self.admin_key)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> None:
        children = _descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        wait_for(
            "the platform's processes to exit",
            lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children),
            timeout=timeout,
        )


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def start_platform(
    home: Path, extra_env: dict[str, str] | None = None, nodes: int = 2, timeout: float = 90.0
) -> RunningPlatform:
    home.mkdir(parents=True, exist_ok=True)
    (home / "run" / "platform.json").unlink(missing_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "MODELFLEET_BOOTSTRAP_API_KEY": ADMIN_KEY,
            "MODELFLEET_MAX_BODY_BYTES": str(4 * 1024 * 1024),
            # Adaptive allocations on a test's time scale: tick twice a second, idle to zero in 3 s.
            "MODELFLEET_AUTOSCALE_INTERVAL": "0.5",
            "MODELFLEET_SCALE_TO_ZERO_AFTER": "3",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra_env or {})
    log_path = home / f"platform-{int(time.time() * 1000)}.log"
    log = log_path.open("wb")
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
            str(nodes),
            "--heartbeat-interval",
            "0.5",
            "--node-lost-after",
            "3",
            "--node-processors",
            "4",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    running = RunningPlatform(home=home, proc=proc, log_path=log_path)
    STARTED.append(running)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the platform exited early:\n{running.log()[-4000:]}")
        if not (home / "run" / "platform.json").exists():
            return False
        info = running.refresh()
        return bool(info.get("url")) and len(info.get("nodes", {})) == nodes

    wait_for("the platform to serve", ready, timeout=timeout)
    with running.client() as c:
        wait_for(
            "every node to register",
            lambda: (
                len([n for n in c.request("GET", "/api/v1/nodes")["nodes"] if n["state"] == "ready"]) == nodes
            ),
            timeout=timeout,
        )
    return running
