"""The local platform (`python -m modelfleet up`) as a subprocess, for tests, the benchmark, the
fault suite and scripts: start it on port 0 with a preset admin key, wait until every node is
ready, read its run file (`<home>/run/platform.json`: URL, pids), stop it and its children."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from modelfleet.client import Client

T = TypeVar("T")
UP = (sys.executable, "-m", "modelfleet", "up", "--port", "0", "--no-example")


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll `check` until it returns something truthy; TimeoutError naming `what` after `timeout`."""
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


@dataclass(frozen=True)
class LaunchOptions:
    nodes: int = 2
    node_processors: int | None = None  # None: the machine's
    heartbeat_interval: float | None = None
    node_lost_after: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def arguments(self) -> list[str]:
        args = ["--nodes", str(self.nodes)]
        for flag, value in (
            ("--node-processors", self.node_processors),
            ("--heartbeat-interval", self.heartbeat_interval),
            ("--node-lost-after", self.node_lost_after),
        ):
            if value is not None:
                args += [flag, str(value)]
        return args


@dataclass
class LocalPlatform:
    home: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    admin_key: str
    nodes: int
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
        return {k: int(v) for k, v in self.refresh()["nodes"].items()}

    def batch_worker_pids(self) -> dict[str, int]:
        """Batch worker processes by id (restarted by the platform after they die)."""
        return {k: int(v) for k, v in self.refresh().get("batch_workers", {}).items()}

    def node_rss(self, node_id: str) -> int:
        """RSS of a node process and its children (the models live in the node)."""
        proc = psutil.Process(self.node_pids()[node_id])
        return sum(int(p.memory_info().rss) for p in [proc, *proc.children(recursive=True)])

    def client(self, key: str | None = None, timeout: float = 60.0) -> Client:
        return Client(self.url, key or self.admin_key, timeout=timeout, ca_file=self.ca_file)

    @property
    def ca_file(self) -> str | None:
        """The CA of a self-signed HTTPS gateway (None for HTTP or a public certificate)."""
        value = self.info.get("ca_file")
        return str(value) if value else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> None:
        """Stop the platform and wait until every process it started has exited."""
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

    def wait_until_ready(self, timeout: float) -> None:
        def serving() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the platform exited early:\n{self.log()[-4000:]}")
            if not (self.home / "run" / "platform.json").exists():
                return False
            info = self.refresh()
            return bool(info.get("url")) and len(info.get("nodes", {})) == self.nodes

        wait_for("the platform to serve", serving, timeout=timeout)
        with self.client() as c:
            wait_for(
                "every node to register",
                lambda: (
                    sum(n["state"] == "ready" for n in c.request("GET", "/api/v1/nodes")["nodes"])
                    == self.nodes
                ),
                timeout=timeout,
            )


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
        return children
    except psutil.NoSuchProcess:
        return []


def launch(
    home: Path, admin_key: str, options: LaunchOptions | None = None, timeout: float = 90.0
) -> LocalPlatform:
    """Start a platform whose state lives in `home` (kept between launches: restarts replay it)
    and wait until its nodes are ready. Its output goes to a log file in `home`."""
    opts = options or LaunchOptions()
    home.mkdir(parents=True, exist_ok=True)
    (home / "run" / "platform.json").unlink(missing_ok=True)
    env = {**os.environ, "MODELFLEET_BOOTSTRAP_API_KEY": admin_key, "PYTHONUNBUFFERED": "1", **opts.env}
    log_path = home / f"platform-{int(time.time() * 1000)}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*UP, "--home", str(home), *opts.arguments()],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    platform = LocalPlatform(home=home, proc=proc, log_path=log_path, admin_key=admin_key, nodes=opts.nodes)
    try:
        platform.wait_until_ready(timeout)
    except BaseException:
        platform.stop()
        raise
    return platform
