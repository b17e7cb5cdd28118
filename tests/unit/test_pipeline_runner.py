"""A deployment's runner with real executor processes: logs kept apart in parallel (threads and
an event loop), stand-by, import failures, the RAM limit and the execution timeout."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelfleet.pipelines.runner import DeploymentRunner, RunnerConfig, RunnerState

SOURCE = """
import asyncio, logging, sys, threading, time

barrier = threading.Barrier(4, timeout=20)

def chatty(tag):
    barrier.wait()  # all four run at once
    for i in range(30):
        print(f"{tag} out {i}")
        logging.getLogger("p").warning("%s log %d", tag, i)
        sys.stderr.write(f"{tag} err {i}\\n")
        time.sleep(0.001)
    print(f"{tag} no newline", end="")
    return {"tag": tag}

async def achatty(tag):
    for i in range(30):
        print(f"{tag} out {i}")
        logging.getLogger("p").warning("%s log %d", tag, i)
        await asyncio.sleep(0.001)
    return {"tag": tag}

def slow(seconds):
    time.sleep(seconds)
    return {}

from concurrent.futures import ThreadPoolExecutor
shared_pool = ThreadPoolExecutor(2)  # a library's pool, shared by every execution

def spawner(tag):
    barrier.wait()
    t = threading.Thread(target=lambda: print(f"{tag} from its own thread"))
    t.start()
    t.join()
    for i in range(5):
        shared_pool.submit(print, f"{tag} from the shared pool {i}").result()
    return {"tag": tag}

def crash(code):
    import os
    os._exit(code)

def peek(names):
    import os
    return {n: os.environ.get(n) for n in names}

def hog(megabytes):
    blob = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(blob), 4096):
        blob[i] = 1
    if megabytes > 10:
        time.sleep(20)  # holds the memory until the watchdog stops it
    return {}
"""


class Recorder:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.logs: dict[str, list[str]] = {}
        self.finished: dict[str, tuple[bool, dict[str, Any], str | None]] = {}
        self.states: list[tuple[RunnerState, str | None]] = []

    def on_started(self, execution_id: str, at_ms: int, attempt: int) -> None:
        pass

    def on_log(self, execution_id: str, at_ms: int, stream: str, message: str) -> None:
        with self.cond:
            self.logs.setdefault(execution_id, []).append(message)

    def on_finished(
        self, execution_id: str, at_ms: int, ok: bool, outputs: dict[str, Any], error: str | None
    ) -> None:
        with self.cond:
            self.finished[execution_id] = (ok, outputs, error)
            self.cond.notify_all()

    def on_state(self, key: str, state: RunnerState, reason: str | None) -> None:
        with self.cond:
            self.states.append((state, reason))
            self.cond.notify_all()

    def wait(self, check: Any, timeout: float = 30) -> None:
        with self.cond:
            assert self.cond.wait_for(check, timeout), "timed out"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    (tmp_path / "main.py").write_text(SOURCE)
    return tmp_path


@pytest.fixture
def runners() -> Iterator[list[DeploymentRunner]]:
    made: list[DeploymentRunner] = []
    yield made
    for r in made:
        r.close()


def start(
    runners: list[DeploymentRunner], source: Path, function: str, **kw: Any
) -> tuple[DeploymentRunner, Recorder]:
    rec = Recorder()
    r = DeploymentRunner(RunnerConfig("p/d", source, "main.py", function, **kw), rec)
    runners.append(r)
    return r, rec


@pytest.mark.parametrize("function", ["chatty", "achatty"])
def test_parallel_executions_keep_their_logs_apart(
    source: Path, runners: list[DeploymentRunner], function: str
) -> None:
    r, rec = start(runners, source, function, parallel=True, max_parallel=4, warm=True)
    tags = ["alpha", "beta", "gamma", "delta"]
    for t in tags:
        r.submit(t, {"tag": t})
    rec.wait(lambda: len(rec.finished) == 4)
    for t in tags:
        ok, outputs, _ = rec.finished[t]
        assert ok and outputs == {"tag": t}
        lines = rec.logs[t]
        assert all(line.startswith(t) or t in line for line in lines), f"{t} got another's lines"
        assert sum(f"{t} out" in line for line in lines) == 30
        assert sum(f"{t} log" in line for line in lines) == 30
        if function == "chatty":
            assert sum(f"{t} err" in line for line in lines) == 30
            assert lines[-1] == f"{t} no newline"


def test_an_elastic_runner_goes_to_standby_and_wakes(source: Path, runners: list[DeploymentRunner]) -> None:
    r, rec = start(runners, source, "slow", standby_after_s=0.3)
    assert r.state == RunnerState.STANDBY
    r.submit("a", {"seconds": 0})
    rec.wait(lambda: "a" in rec.finished)
    rec.wait(lambda: rec.states[-1][0] == RunnerState.STANDBY)
    r.submit("b", {"seconds": 0})
    rec.wait(lambda: "b" in rec.finished)
    assert len(r.cold_starts) == 2  # woken twice from stand-by
    assert [s for s, _ in rec.states].count(RunnerState.UP) == 2


def test_an_import_failure_fails_the_runner_and_its_queue(
    source: Path, runners: list[DeploymentRunner]
) -> None:
    (source / "main.py").write_text("import no_such_module_anywhere\n")
    r, rec = start(runners, source, "f")
    r.submit("a", {})
    rec.wait(lambda: "a" in rec.finished)
    ok, _, error = rec.finished["a"]
    assert not ok and error is not None and "no_such_module_anywhere" in error
    assert rec.states[-1][0] == RunnerState.FAILED


def test_an_execution_over_the_ram_limit_is_stopped_and_the_next_runs(
    source: Path, runners: list[DeploymentRunner]
) -> None:
    r, rec = start(runners, source, "hog", ram_limit_bytes=120 * 1024 * 1024, warm=True)
    r.submit("big", {"megabytes": 300})
    r.submit("quick", {"megabytes": 1})
    rec.wait(lambda: "quick" in rec.finished)
    ok, _, error = rec.finished["big"]
    assert not ok and error is not None and "out of memory" in error and "120 MiB" in error
    assert rec.finished["quick"][0] is True  # a fresh executor process took the queue on


def test_an_execution_over_its_timeout_is_stopped(source: Path, runners: list[DeploymentRunner]) -> None:
    r, rec = start(runners, source, "slow", execution_timeout_s=0.5, warm=True)
    r.submit("late", {"seconds": 30})
    r.submit("next", {"seconds": 0})
    rec.wait(lambda: "next" in rec.finished)
    assert rec.finished["late"][0] is False and "timed out" in str(rec.finished["late"][2])
    assert rec.finished["next"][0] is True


def test_executors_see_the_projects_variables_and_none_of_the_platforms(
    source: Path, runners: list[DeploymentRunner], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELFLEET_PLATFORM_API_KEY", "mfk_admin:secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cloud-secret")
    r, rec = start(runners, source, "peek", env=(("GREETING", "hello"),))
    r.submit("a", {"names": ["MODELFLEET_PLATFORM_API_KEY", "AWS_SECRET_ACCESS_KEY", "GREETING"]})
    rec.wait(lambda: "a" in rec.finished)
    assert rec.finished["a"][1] == {
        "MODELFLEET_PLATFORM_API_KEY": None,
        "AWS_SECRET_ACCESS_KEY": None,
        "GREETING": "hello",
    }


def test_a_retired_runner_finishes_its_queue_then_closes(
    source: Path, runners: list[DeploymentRunner]
) -> None:
    r, rec = start(runners, source, "slow", warm=True)
    r.submit("a", {"seconds": 0.2})
    r.submit("b", {"seconds": 0})
    r.retire()
    rec.wait(lambda: rec.states[-1][0] == RunnerState.CLOSED)
    assert rec.finished["a"][0] is True and rec.finished["b"][0] is True


def test_threads_and_pools_started_by_an_execution_log_into_it(
    source: Path, runners: list[DeploymentRunner]
) -> None:
    r, rec = start(runners, source, "spawner", parallel=True, max_parallel=4, warm=True)
    tags = ["alpha", "beta", "gamma", "delta"]
    for t in tags:
        r.submit(t, {"tag": t})
    rec.wait(lambda: len(rec.finished) == 4)
    for t in tags:
        assert rec.finished[t][0] is True
        lines = rec.logs[t]
        assert f"{t} from its own thread" in lines
        assert sum(line.startswith(f"{t} from the shared pool") for line in lines) == 5
        assert all(line.startswith(t) for line in lines), lines


def test_an_executor_that_dies_fails_what_ran_there_and_restarts(
    source: Path, runners: list[DeploymentRunner]
) -> None:
    r, rec = start(runners, source, "crash", warm=True)
    rec.wait(lambda: any(s == RunnerState.UP for s, _ in rec.states))
    r.submit("dies", {"code": 3})
    rec.wait(lambda: "dies" in rec.finished)
    assert rec.finished["dies"][0] is False and "exit code 3" in str(rec.finished["dies"][2])
    rec.wait(lambda: [s for s, _ in rec.states].count(RunnerState.UP) == 2)  # warm again
