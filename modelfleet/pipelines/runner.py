"""One deployment's executions: its executor process, its queue and its watchdog.

The runner owns an executor process (executor.py) and feeds it from an `ExecutionQueue`: one at a
time in Queue mode (a failure retried directly, before the others), up to N in Parallel mode.
`low_latency` runners start the process at once and keep it warm; `elastic` ones start it on the
first execution and stop it after `standby_after_s` without work (stand-by), so the next trigger
waits for a cold start instead of failing.

The watchdog stops an execution that goes over the deployment's `ram_request` (the executor's
resident memory, children included) or its `execution_timeout_s`: it kills the executor process,
marks what was running there Failed with the reason, and starts a fresh process for what is
queued. The node, and every other deployment, keeps running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import psutil

from modelfleet.pipelines.queueing import ExecutionQueue, Outcome

log = logging.getLogger(__name__)
WATCH_INTERVAL_S = 0.02  # memory and deadlines, while an executor process runs
IDLE_WATCH_INTERVAL_S = 0.2
READY_TIMEOUT_S = 120.0
MIB = 1024 * 1024
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "VIRTUAL_ENV", "SYSTEMROOT")


class RunnerState(StrEnum):
    STARTING = "starting"
    UP = "up"
    STANDBY = "standby"
    FAILED = "failed"  # the function could not be imported
    CLOSED = "closed"


@dataclass(frozen=True)
class RunnerConfig:
    key: str
    source: Path
    function_path: str
    function_name: str
    parallel: bool = False
    max_parallel: int = 1
    ram_limit_bytes: int | None = None
    execution_timeout_s: float | None = None
    warm: bool = False  # low_latency: start now and stay warm
    standby_after_s: float = 60.0  # elastic: stop the process after this long without work
    env: tuple[tuple[str, str], ...] = ()


class RunnerEvents(Protocol):
    def on_started(self, execution_id: str, at_ms: int, attempt: int) -> None: ...
    def on_log(self, execution_id: str, at_ms: int, stream: str, message: str) -> None: ...
    def on_finished(
        self, execution_id: str, at_ms: int, ok: bool, outputs: dict[str, Any], error: str | None
    ) -> None: ...
    def on_state(self, key: str, state: RunnerState, reason: str | None) -> None: ...


class ExecutorProcess:
    """The child process and the thread that reads its events."""

    def __init__(self, cfg: RunnerConfig, on_event: Any) -> None:
        # Only a few harmless variables of the platform's environment (never its keys or cloud
        # credentials), plus the project's environment variables.
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update(dict(cfg.env))
        env["PYTHONUNBUFFERED"] = "1"
        args = [
            sys.executable,
            "-m",
            "modelfleet.pipelines.executor",
            "--source",
            str(cfg.source),
            "--function-path",
            cfg.function_path,
            "--function-name",
            cfg.function_name,
            "--max-parallel",
            str(cfg.max_parallel if cfg.parallel else 1),
        ]
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(cfg.source), env=env
        )
        self.ready = threading.Event()
        self.ready_at: float | None = None
        self.import_error: str | None = None
        self._on_event = on_event
        self._write_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name=f"executor-{cfg.key}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            kind = event.get("type")
            if kind == "ready":
                self.ready_at = time.monotonic()
                self.ready.set()
            elif kind == "import_failed":
                self.import_error = str(event.get("error"))
                self.ready.set()
            self._on_event(self, event)
        self.ready.set()  # exited: whoever waits learns it from alive()

    def send(self, command: dict[str, Any]) -> bool:
        assert self.proc.stdin is not None
        try:
            with self._write_lock:
                self.proc.stdin.write((json.dumps(command) + "\n").encode())
                self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_bytes(self) -> int:
        try:
            p = psutil.Process(self.proc.pid)
            total = int(p.memory_info().rss)
            for child in p.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += int(child.memory_info().rss)
            return total
        except psutil.Error:
            return 0

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def stop(self) -> None:
        self.send({"op": "stop"})
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        self.kill()


class DeploymentRunner:
    def __init__(self, cfg: RunnerConfig, events: RunnerEvents) -> None:
        self.cfg = cfg
        self._events = events
        self._lock = threading.RLock()
        self._queue = ExecutionQueue.for_mode(cfg.parallel, cfg.max_parallel)
        self._inputs: dict[str, dict[str, Any]] = {}
        self._started: dict[str, float] = {}  # execution -> monotonic start, for the timeout
        self._attempts: dict[str, int] = {}
        self._proc: ExecutorProcess | None = None
        self._closed = False
        self._retired = False
        self._last_work = time.monotonic()
        self.state = RunnerState.STANDBY
        self.cold_starts: list[float] = []  # seconds from spawn to ready, per start
        self._watchdog = threading.Thread(target=self._watch, name=f"watchdog-{cfg.key}", daemon=True)
        self._watchdog.start()
        if cfg.warm:
            with self._lock:
                self._ensure_process()

    # --- submitting ----------------------------------------------------------------------------
    def submit(self, execution_id: str, inputs: dict[str, Any]) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("this deployment's runner is closed")
            self._inputs[execution_id] = inputs
            self._queue.enqueue(execution_id)
            self._last_work = time.monotonic()
            self._pump()

    def close(self, reason: str = "the deployment was deleted") -> None:
        with self._lock:
            self._closed = True
            proc, self._proc = self._proc, None
            pending = self._queue.drop_waiting() + self._queue.running()
        if proc is not None:
            proc.stop()
        for execution_id in pending:
            self._fail(execution_id, reason)
        self._set_state(RunnerState.CLOSED, reason)

    def retire(self) -> None:
        """A newer runner takes the deployment's new executions; this one finishes what it has
        (queued ones included) and then closes."""
        with self._lock:
            self._retired = True
            idle = self._queue.idle
        if idle:
            self.close("retired")

    @property
    def busy(self) -> bool:
        with self._lock:
            return not self._queue.idle

    # --- internals (under self._lock) ----------------------------------------------------------
    def _ensure_process(self) -> None:
        if (self._proc is not None and self._proc.alive()) or self._closed:
            return
        self._set_state(RunnerState.STARTING, None)
        self._proc = ExecutorProcess(self.cfg, self._on_event)

    def _pump(self) -> None:
        if self._closed or self._queue.idle:
            return
        if self._queue.waiting():
            self._ensure_process()
        proc = self._proc
        if proc is None or not proc.ready.is_set() or proc.import_error is not None:
            return  # the "ready" event pumps again
        for start in self._queue.to_start():
            self._started[start.execution_id] = time.monotonic()
            self._attempts[start.execution_id] = start.attempt
            if not proc.send(
                {"op": "run", "id": start.execution_id, "inputs": self._inputs[start.execution_id]}
            ):
                self._queue.finished(start.execution_id, ok=False, retryable=False)
                self._fail(start.execution_id, "the executor process is gone")

    def _set_state(self, state: RunnerState, reason: str | None) -> None:
        if state == self.state and state != RunnerState.FAILED:
            return
        self.state = state
        try:
            self._events.on_state(self.cfg.key, state, reason)
        except Exception:
            log.exception("runner state callback failed")

    def _fail(self, execution_id: str, reason: str) -> None:
        self._inputs.pop(execution_id, None)
        self._started.pop(execution_id, None)
        self._events.on_finished(execution_id, int(time.time() * 1000), False, {}, reason)

    def _on_event(self, proc: ExecutorProcess, event: dict[str, Any]) -> None:
        kind = event.get("type")
        execution_id = str(event.get("id", ""))
        at_ms = int(event.get("at_ms") or time.time() * 1000)
        if kind == "log":
            self._events.on_log(execution_id, at_ms, str(event.get("stream")), str(event.get("message")))
            return
        with self._lock:
            if proc is not self._proc:
                return  # a killed process's last words
            if kind == "ready":
                assert proc.ready_at is not None
                self.cold_starts.append(proc.ready_at - proc.started_at)
                self._set_state(RunnerState.UP, None)
                self._pump()
            elif kind == "import_failed":
                reason = f"the pipeline function could not be imported: {event.get('error')}"
                self._set_state(RunnerState.FAILED, reason)
                self._proc = None
                for execution_id in self._queue.drop_waiting():
                    self._fail(execution_id, reason)
            elif kind == "started":
                self._events.on_started(execution_id, at_ms, self._attempts.get(execution_id, 1))
            elif kind == "done":
                ok = bool(event.get("ok"))
                error = None if ok else str(event.get("error"))
                outcome = self._queue.finished(execution_id, ok)
                self._started.pop(execution_id, None)
                self._last_work = time.monotonic()
                if outcome is Outcome.RETRYING:
                    self._events.on_log(
                        execution_id, at_ms, "platform", f"attempt failed ({error}); retrying it now"
                    )
                else:
                    self._inputs.pop(execution_id, None)
                    outputs = event.get("outputs") or {}
                    self._events.on_finished(execution_id, at_ms, ok, outputs, error)
                self._pump()

    def _kill_running(self, reason: str) -> None:
        """Stop the executor; what ran there fails with `reason`; the queue goes on in a new one."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
        for execution_id in self._queue.running():
            self._queue.finished(execution_id, ok=False, retryable=False)
            self._fail(execution_id, reason)
        if self.cfg.warm or self._queue.waiting():
            self._ensure_process()
        else:
            self._set_state(RunnerState.STANDBY, None)

    def _watch(self) -> None:
        limit = self.cfg.ram_limit_bytes
        timeout = self.cfg.execution_timeout_s
        while True:
            time.sleep(WATCH_INTERVAL_S if self._proc is not None else IDLE_WATCH_INTERVAL_S)
            with self._lock:
                if self._closed:
                    return
                if self._retired and self._queue.idle:
                    break
                proc = self._proc
                if proc is None:
                    continue
                if not proc.alive():
                    if proc.ready.is_set() and proc.import_error is None:
                        code = proc.proc.returncode
                        self._kill_running(f"the executor process exited unexpectedly (exit code {code})")
                    continue
                running = self._queue.running()
                if limit and running:
                    rss = proc.rss_bytes()
                    if rss > limit:
                        self._kill_running(
                            f"out of memory: the execution used {rss / MIB:.0f} MiB, over the "
                            f"deployment's ram_request of {limit / MIB:.0f} MiB; it was stopped"
                        )
                        continue
                if timeout:
                    now = time.monotonic()
                    late = [e for e in running if now - self._started.get(e, now) > timeout]
                    if late:
                        self._kill_running(f"the execution timed out after {timeout:g} s")
                        continue
                if (
                    not self.cfg.warm
                    and self._queue.idle
                    and proc.ready.is_set()
                    and time.monotonic() - self._last_work > self.cfg.standby_after_s
                ):
                    self._proc = None
                    proc.stop()
                    self._set_state(RunnerState.STANDBY, None)
        self.close("retired")
