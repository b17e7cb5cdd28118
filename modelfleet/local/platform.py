"""The embedded local platform: a durable moto server standing in for AWS, the gateway (with
the Lambda handlers in-process), the scheduler, and worker node processes.

    platform = LocalPlatform(PlatformOptions(home=Path(".modelfleet"), port=8080))
    platform.run()          # foreground; Ctrl-C (or SIGTERM) stops everything

Every child process is started with a lifeline, so even a kill -9 of this process takes the
moto server and the nodes down with it. State lives in the moto server's journal under `home`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

import uvicorn

from modelfleet.local.tls import TlsError, TlsFiles, given, self_signed
from modelfleet.resources import TABLES, Names
from modelfleet.trust import CA_FILE_ENV

log = logging.getLogger("modelfleet")


@dataclass
class PlatformOptions:
    home: Path
    port: int = 8080
    host: str = "127.0.0.1"
    nodes: int = 2
    node_processors: int | None = None
    node_memory_bytes: int | None = None
    example: bool = True
    heartbeat_interval: float = 1.0
    node_lost_after: float = 5.0
    restart_nodes_after: float | None = None  # default: node_lost_after + 1 s
    bootstrap_key: str | None = None
    stack: str = "modelfleet"
    extra_env: dict[str, str] = field(default_factory=dict)
    # Batch worker processes (modelfleet.batch.worker), supervised like nodes.
    batch_workers: int = field(default_factory=lambda: int(os.environ.get("MODELFLEET_BATCH_WORKERS", "1")))
    # HTTPS: "self-signed" (a local CA under home/tls), or a given certificate and key (tls_ca: the
    # CA that signed them, for the nodes to trust; None means a publicly trusted one). Defaults from
    # MODELFLEET_TLS, MODELFLEET_TLS_CERT, MODELFLEET_TLS_KEY and MODELFLEET_TLS_CA.
    tls: str | None = field(default_factory=lambda: os.environ.get("MODELFLEET_TLS") or None)
    tls_cert: Path | None = field(default_factory=lambda: _env_path("MODELFLEET_TLS_CERT"))
    tls_key: Path | None = field(default_factory=lambda: _env_path("MODELFLEET_TLS_KEY"))
    tls_ca: Path | None = field(default_factory=lambda: _env_path("MODELFLEET_TLS_CA"))


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def tls_files(opts: PlatformOptions, home: Path) -> TlsFiles | None:
    """The gateway's certificate, or None to serve plain HTTP."""
    if opts.tls_cert or opts.tls_key:
        if not (opts.tls_cert and opts.tls_key):
            raise TlsError("HTTPS with a given certificate needs both a certificate and a key")
        return given(opts.tls_cert, opts.tls_key, opts.tls_ca)
    if opts.tls in (None, "", "off"):
        return None
    if opts.tls != "self-signed":
        raise TlsError(f"unknown TLS mode {opts.tls!r}: use 'self-signed' or give a certificate and key")
    hosts = [opts.host] if opts.host not in ("0.0.0.0", "::") else [socket.gethostname()]
    return self_signed(home / "tls", [*hosts, "localhost", "127.0.0.1"])


def _env_defaults(opts: PlatformOptions, aws_endpoint: str | None) -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"]
    os.environ["MODELFLEET_STACK"] = opts.stack
    os.environ["MODELFLEET_HEARTBEAT_INTERVAL"] = str(opts.heartbeat_interval)
    os.environ["MODELFLEET_NODE_LOST_AFTER"] = str(opts.node_lost_after)
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "modelfleet")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "modelfleet")
    if aws_endpoint:
        os.environ["MODELFLEET_AWS_ENDPOINT"] = aws_endpoint
    os.environ.update(opts.extra_env)


def _secret_file(path: Path, make: str) -> str:
    """Read a 0600 secret file, creating it with `make` on first use."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(make)
    return make


class LocalPlatform:
    def __init__(self, opts: PlatformOptions) -> None:
        self.opts = opts
        self.home = opts.home.resolve()
        self.aws_proc: subprocess.Popen[str] | None = None
        self.aws_endpoint = ""
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.batch_workers: dict[str, subprocess.Popen[bytes]] = {}
        self._node_died_at: dict[str, float] = {}
        self._stopping = threading.Event()
        self.url = ""
        self.admin_key: str | None = None
        self.platform_key: str | None = None  # a newly made platform admin key, printed once
        self._server: uvicorn.Server | None = None
        self.tls: TlsFiles | None = None

    # --- AWS ----------------------------------------------------------------------------------------
    def start_aws(self) -> None:
        names = Names(self.opts.stack)
        args = [
            sys.executable,
            "-m",
            "modelfleet.local.aws_server",
            "--home",
            str(self.home / "aws"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ]
        for t in TABLES:
            if not t.durable:
                args += ["--ephemeral-table", names.table(t.logical)]
        if os.environ.get("MODELFLEET_JOURNAL_FSYNC") == "1":
            args.append("--fsync")
        self.aws_proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.aws_proc.stdout is not None
        line = _read_line(self.aws_proc.stdout, timeout=60)
        if not line.startswith("MOTO_READY"):
            raise RuntimeError(f"the AWS stand-in did not start: {line!r}")
        parts = line.split()
        self.aws_endpoint = parts[1]
        threading.Thread(target=_drain, args=(self.aws_proc.stdout,), name="aws-stdout", daemon=True).start()
        log.info("AWS stand-in (moto) at %s, %s", self.aws_endpoint, parts[2] if len(parts) > 2 else "")

    # --- nodes ----------------------------------------------------------------------------------------
    def start_node(self, node_id: str) -> None:
        key_file = self.home / "secrets" / "node.key"
        env = dict(os.environ, MODELFLEET_NODE_KEY=key_file.read_text().strip())
        args = [
            sys.executable,
            "-m",
            "modelfleet.worker",
            "--node-id",
            node_id,
            "--control-url",
            self.url,
            "--model-dir",
            str(self.home / "nodes" / node_id / "models"),
            "--exit-with-parent",
        ]
        if self.opts.node_processors:
            args += ["--processors", str(self.opts.node_processors)]
        if self.opts.node_memory_bytes:
            args += ["--memory-bytes", str(self.opts.node_memory_bytes)]
        self.nodes[node_id] = subprocess.Popen(args, env=env)
        self._node_died_at.pop(node_id, None)

    def start_batch_worker(self, worker_id: str) -> None:
        args = [
            sys.executable,
            "-m",
            "modelfleet.batch.worker",
            "--worker-id",
            worker_id,
            "--model-dir",
            str(self.home / "batch" / worker_id / "models"),
            "--exit-with-parent",
        ]
        self.batch_workers[worker_id] = subprocess.Popen(args)
        self._node_died_at.pop(worker_id, None)

    def _supervise_nodes(self) -> None:
        restart_after = self.opts.restart_nodes_after
        if restart_after is None:
            restart_after = self.opts.node_lost_after + 1.0
        while not self._stopping.wait(0.2):
            for node_id, proc in list(self.nodes.items()):
                if proc.poll() is None:
                    continue
                died = self._node_died_at.setdefault(node_id, time.monotonic())
                if time.monotonic() - died < restart_after:
                    continue
                log.warning("node %s exited (%s); restarting it", node_id, proc.returncode)
                self.start_node(node_id)
            for worker_id, proc in list(self.batch_workers.items()):
                if proc.poll() is None or self._stopping.is_set():
                    continue
                died = self._node_died_at.setdefault(worker_id, time.monotonic())
                if time.monotonic() - died < restart_after:
                    continue
                log.warning("batch worker %s exited (%s); restarting it", worker_id, proc.returncode)
                self.start_batch_worker(worker_id)
            self._write_run_file()

    # --- lifecycle --------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Start AWS, create resources, keys; everything but serving."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.start_aws()
        _env_defaults(self.opts, self.aws_endpoint)
        from modelfleet.config import Settings
        from modelfleet.control.container import control_plane, utcnow
        from modelfleet.local.bootstrap import bootstrap_resources

        bootstrap_resources(Settings.from_env())
        cp = control_plane()
        now = utcnow()
        preset = self.opts.bootstrap_key or os.environ.get("MODELFLEET_BOOTSTRAP_API_KEY") or None
        self.admin_key = cp.keys.bootstrap(now, preset)
        if self.admin_key is None and preset:
            self.admin_key = preset
        platform_preset = os.environ.get("MODELFLEET_PLATFORM_API_KEY") or None
        self.platform_key = cp.keys.bootstrap_platform_admin(now, platform_preset)
        if platform_preset:
            self.platform_key = None  # the caller knows it; never print a preset key
        node_key = _secret_file(
            self.home / "secrets" / "node.key", f"mfn_{secrets.token_hex(8)}:{secrets.token_urlsafe(32)}"
        )
        cp.keys.ensure_node_key(node_key, now)
        # Nodes of the previous run died with it: mark them lost now (their allocations go back
        # to pending), instead of serving stale routes until the first scheduled sweep.
        cp.nodes.sweep(now, silent_since=now)

    def _write_run_file(self) -> None:
        run = {
            "url": self.url,
            "aws_endpoint": self.aws_endpoint,
            "pid": os.getpid(),
            "aws_pid": self.aws_proc.pid if self.aws_proc else None,
            "nodes": {n: p.pid for n, p in self.nodes.items() if p.poll() is None},
            "batch_workers": {n: p.pid for n, p in self.batch_workers.items() if p.poll() is None},
            "ca_file": str(self.tls.ca) if self.tls and self.tls.ca else None,
        }
        path = self.home / "run" / "platform.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(run))
        os.replace(tmp, path)

    def _after_start(self) -> None:
        server = self._server
        assert server is not None
        while not server.started and not self._stopping.is_set():
            time.sleep(0.02)
        if self._stopping.is_set():
            return
        sockets = [s for srv in server.servers for s in srv.sockets]
        port = sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://{self.opts.host}:{port}"
        for i in range(self.opts.nodes):
            self.start_node(f"node-{i + 1}")
        for i in range(self.opts.batch_workers):
            self.start_batch_worker(f"batch-{i + 1}")
        self._write_run_file()
        threading.Thread(target=self._supervise_nodes, name="node-supervisor", daemon=True).start()
        print(f"modelfleet is serving on {self.url}", flush=True)
        if (
            self.admin_key
            and not self.opts.bootstrap_key
            and not os.environ.get("MODELFLEET_BOOTSTRAP_API_KEY")
        ):
            print(
                "admin API key for project 'default' (shown once, only its hash is stored):\n"
                f"  {self.admin_key}",
                flush=True,
            )
        if self.platform_key:
            print(
                "platform admin API key (project '_system': creates and deletes projects; shown once):\n"
                f"  {self.platform_key}",
                flush=True,
            )
        if self.opts.example:
            from modelfleet.examples.deploy import deploy_example

            try:
                deploy_example(self.url, self.admin_key, self.home / "example")
            except Exception as e:
                log.error("the example deployment failed: %s", e)
        print("ready", flush=True)

    def run(self) -> int:
        from functions import scheduler
        from modelfleet.config import Settings
        from modelfleet.gateway.app import create_app
        from modelfleet.local.scheduler import Job, LocalScheduler
        from modelfleet.resources import SCHEDULES

        self.tls = tls_files(self.opts, self.home)
        if self.tls and self.tls.ca:
            # the nodes and the example deployer (and anything else this process starts) trust it
            os.environ[CA_FILE_ENV] = str(self.tls.ca)
        self.prepare()
        settings = Settings.from_env()
        jobs = [
            Job({"task": s.task}, float(getattr(settings, s.setting)) if s.setting else s.every_seconds)
            for s in SCHEDULES
        ]
        sched = LocalScheduler(scheduler.handler, jobs)
        config = uvicorn.Config(
            create_app(settings),
            host=self.opts.host,
            port=self.opts.port,
            log_level="warning",
            access_log=False,
            timeout_keep_alive=75,
            ssl_certfile=str(self.tls.cert) if self.tls else None,
            ssl_keyfile=str(self.tls.key) if self.tls else None,
        )
        self._server = _GatewayServer(config, on_exit=self._terminate_nodes)
        threading.Thread(target=self._after_start, name="platform-start", daemon=True).start()
        sched.start()
        try:
            self._server.run()
        except KeyboardInterrupt:
            pass  # uvicorn re-raises the Ctrl-C it handled; the shutdown below is the normal exit
        finally:
            self._stopping.set()
            sched.stop()
            self.shutdown()
        return 0

    def _terminate_nodes(self) -> None:
        """Nodes stop first, so none of them syncs against a gateway that is going away."""
        self._stopping.set()
        for proc in [*self.nodes.values(), *self.batch_workers.values()]:
            if proc.poll() is None:
                proc.terminate()

    def shutdown(self) -> None:
        self._terminate_nodes()
        for proc in [*self.nodes.values(), *self.batch_workers.values()]:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.aws_proc and self.aws_proc.poll() is None:
            self.aws_proc.send_signal(signal.SIGTERM)
            try:
                self.aws_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.aws_proc.kill()
        (self.home / "run" / "platform.json").unlink(missing_ok=True)
        print("modelfleet stopped", flush=True)


class _GatewayServer(uvicorn.Server):
    """uvicorn, telling the platform when a stop signal arrives (before it drains connections)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        super().handle_exit(sig, frame)


def _drain(stream: IO[str]) -> None:
    for line in stream:
        sys.stdout.write(line)


def _read_line(stream: IO[str], timeout: float) -> str:
    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return result[0].strip() if result else ""
