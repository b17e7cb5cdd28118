"""The executor process: imports the user's pipeline function once, then runs executions.

    python -m modelfleet.pipelines.executor --source DIR --function-path src/main.py \
        --function-name f --max-parallel 4

Protocol: JSON lines. Commands arrive on stdin (`{"op": "run", "id", "inputs"}`, `{"op": "stop"}`);
events leave on the process's original stdout (`ready` | `import_failed`, then per execution
`started`, `log`, `done`). File descriptor 1 is pointed at stderr, so nothing the user's code (or
a C library) writes can corrupt the protocol.

`async def` functions run on one event loop (a thread of their own), sync functions in a thread
pool, up to `--max-parallel` at once (the host never sends more). Each execution's output is
captured separately (logcapture.py). This module imports only the standard library and
logcapture, so a cold start costs the interpreter plus the user's imports.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from modelfleet.pipelines import logcapture


class Channel:
    """The event stream to the host, one JSON object per line, safe across threads."""

    def __init__(self, fd: int) -> None:
        self._out = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()

    def send(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, default=repr)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


def load_function(source: Path, function_path: str, function_name: str) -> Callable[..., Any]:
    """Import `function_path` (relative to `source`) as a module and return `function_name`."""
    file = (source / function_path).resolve()
    if not file.is_relative_to(source.resolve()) or not file.is_file():
        raise FileNotFoundError(f"function file {function_path!r} is not in the pipeline's sources")
    sys.path.insert(0, str(source))
    module_name = "pipeline_" + "_".join(Path(function_path).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {function_path!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    fn = getattr(module, function_name, None)
    if not callable(fn):
        raise AttributeError(f"{function_path!r} defines no function named {function_name!r}")
    function: Callable[..., Any] = fn
    return function


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _jsonable(result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise TypeError(
            f"the pipeline function must return a dict of outputs (or None), not {type(result).__name__}"
        )
    json.dumps(result)  # TypeError now, with the execution, rather than in the host
    return result


class Executor:
    def __init__(self, fn: Callable[..., Any], channel: Channel, routers: tuple[Any, Any], max_parallel: int):
        self._fn = fn
        self._channel = channel
        self._routers = routers
        self._is_async = inspect.iscoroutinefunction(fn)
        self._pool = ThreadPoolExecutor(max_workers=max(1, max_parallel), thread_name_prefix="execution")
        self._loop: Any = None
        if self._is_async:
            import asyncio  # only async pipelines pay for it (cold starts)

            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, name="executions-loop", daemon=True).start()

    def submit(self, execution_id: str, inputs: dict[str, Any]) -> None:
        if self._loop is not None:
            import asyncio

            asyncio.run_coroutine_threadsafe(self._run_async(execution_id, inputs), self._loop)
        else:
            self._pool.submit(self._run_sync, execution_id, inputs)

    def _started(self, execution_id: str) -> None:
        logcapture.CURRENT_EXECUTION.set(execution_id)
        self._channel.send({"type": "started", "id": execution_id, "at_ms": int(time.time() * 1000)})

    def _finish(self, execution_id: str, result: Any = None, error: BaseException | None = None) -> None:
        if error is None:
            try:
                outputs = _jsonable(result)
            except Exception as e:
                error = e
        if error is not None:
            print(
                traceback.format_exc() if error.__traceback__ else _error_text(error), file=sys.stderr, end=""
            )
        for router in self._routers:
            router.flush_execution(execution_id)
        event: dict[str, Any] = {"type": "done", "id": execution_id, "at_ms": int(time.time() * 1000)}
        if error is None:
            event.update(ok=True, outputs=outputs)
        else:
            event.update(ok=False, error=_error_text(error))
        self._channel.send(event)

    def _run_sync(self, execution_id: str, inputs: dict[str, Any]) -> None:
        # A fresh context per execution: the variable is this execution's in this thread only.
        import contextvars

        contextvars.Context().run(self._run_sync_in_context, execution_id, inputs)

    def _run_sync_in_context(self, execution_id: str, inputs: dict[str, Any]) -> None:
        self._started(execution_id)
        try:
            result = self._fn(**inputs)
        except BaseException as e:
            self._finish(execution_id, error=e)
            return
        self._finish(execution_id, result)

    async def _run_async(self, execution_id: str, inputs: dict[str, Any]) -> None:
        self._started(execution_id)  # this task's own context copy
        try:
            result = await self._fn(**inputs)
        except BaseException as e:
            self._finish(execution_id, error=e)
            return
        self._finish(execution_id, result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", required=True)
    parser.add_argument("--function-path", required=True)
    parser.add_argument("--function-name", required=True)
    parser.add_argument("--max-parallel", type=int, default=1)
    args = parser.parse_args(argv)

    channel = Channel(os.dup(1))
    os.dup2(2, 1)  # fd 1 now writes to stderr: the protocol stream is ours alone
    real_stderr = sys.__stderr__
    routers = logcapture.install(
        lambda ex, at, stream, msg: channel.send(
            {"type": "log", "id": ex, "at_ms": at, "stream": stream, "message": msg}
        ),
        real_stderr,  # type: ignore[arg-type]
    )
    source = Path(args.source).resolve()
    os.chdir(source)
    try:
        fn = load_function(source, args.function_path, args.function_name)
    except BaseException as e:
        channel.send({"type": "import_failed", "error": _error_text(e), "trace": traceback.format_exc()})
        return 1
    executor = Executor(fn, channel, routers, args.max_parallel)
    channel.send({"type": "ready", "pid": os.getpid(), "is_async": inspect.iscoroutinefunction(fn)})
    for line in sys.stdin:
        try:
            command = json.loads(line)
        except json.JSONDecodeError:
            continue
        if command.get("op") == "stop":
            break
        if command.get("op") == "run":
            executor.submit(str(command["id"]), dict(command.get("inputs") or {}))
    os._exit(0)  # executions still running are abandoned with the process, as a stop means


if __name__ == "__main__":
    sys.exit(main())
