"""Per-execution log capture inside one executor process.

Parallel executions share a process, so `print`, `logging` and writes to `sys.stderr` must be
told apart. The execution running the current code is a context variable: set when an execution
starts, inherited by its asyncio tasks and by the thread (or task) it runs in. `sys.stdout` and
`sys.stderr` become routers that append each line to that execution's log; a root logging handler
does the same for log records. Threads and thread-pool work items started during an execution stay in
it (carry_context_into_threads). Output with no current execution (the process's own) goes to the
process's real stderr, never into an execution's log.
"""

from __future__ import annotations

import contextvars
import io
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

CURRENT_EXECUTION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "modelfleet_pipeline_execution", default=None
)

# (execution_id, epoch milliseconds, stream, message) -> wherever the executor sends logs
LogSink = Callable[[str, int, str, str], None]


class StreamRouter(io.TextIOBase):
    """A text stream that sends complete lines to the current execution's log."""

    def __init__(self, stream_name: str, sink: LogSink, fallback: io.TextIOBase | None) -> None:
        super().__init__()
        self._name = stream_name
        self._sink = sink
        self._fallback = fallback
        self._partial: dict[str, str] = {}
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def write(self, text: str) -> int:
        execution = CURRENT_EXECUTION.get()
        if execution is None:
            if self._fallback is not None:
                self._fallback.write(text)
                self._fallback.flush()
            return len(text)
        with self._lock:
            buffered = self._partial.pop(execution, "") + text
            *lines, rest = buffered.split("\n")
            if rest:
                self._partial[execution] = rest
        now = int(time.time() * 1000)
        for line in lines:
            self._sink(execution, now, self._name, line)
        return len(text)

    def flush_execution(self, execution: str) -> None:
        """Send what is left of an execution's last line (it ended without a newline)."""
        with self._lock:
            rest = self._partial.pop(execution, "")
        if rest:
            self._sink(execution, int(time.time() * 1000), self._name, rest)

    def flush(self) -> None:
        if self._fallback is not None:
            self._fallback.flush()

    def isatty(self) -> bool:
        return False


class ExecutionLogHandler(logging.Handler):
    """Log records of the current execution go to its log (formatted); others are left alone."""

    def __init__(self, sink: LogSink) -> None:
        super().__init__(level=logging.NOTSET)
        self._sink = sink
        self.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        execution = CURRENT_EXECUTION.get()
        if execution is None:
            return
        try:
            self._sink(execution, int(record.created * 1000), "logging", self.format(record))
        except Exception:
            self.handleError(record)


class _OnlyOutsideExecutions(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return CURRENT_EXECUTION.get() is None


def carry_context_into_threads() -> None:
    """Threads and thread-pool work items run in the context of the code that started them.

    Python gives a new thread an empty context, so a library that prints from its own threads
    would be attributed to no execution (the seed's platform mixes such logs). Here a thread
    started during an execution, and a work item submitted during one, stay in it. A pool thread
    created by one execution and reused by another follows the work item, not the thread.
    """
    import concurrent.futures.thread as pool_module

    original_start = threading.Thread.start
    original_run = threading.Thread.run
    original_submit = pool_module.ThreadPoolExecutor.submit

    def start(self: threading.Thread) -> None:
        self._modelfleet_context = contextvars.copy_context()  # type: ignore[attr-defined]
        original_start(self)

    def run(self: threading.Thread) -> None:
        context = getattr(self, "_modelfleet_context", None)
        if context is None or CURRENT_EXECUTION not in context:
            original_run(self)
        else:
            context.run(original_run, self)

    def submit(self: pool_module.ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        context_run: Any = contextvars.copy_context().run
        return original_submit(self, context_run, fn, *args, **kwargs)

    threading.Thread.start = start  # type: ignore[method-assign]
    threading.Thread.run = run  # type: ignore[method-assign]
    pool_module.ThreadPoolExecutor.submit = submit  # type: ignore[assignment,method-assign]


def install(sink: LogSink, real_stderr: io.TextIOBase) -> tuple[StreamRouter, StreamRouter]:
    """Route this process's stdout, stderr and logging by execution. Returns the two routers."""
    import sys

    out = StreamRouter("stdout", sink, real_stderr)
    err = StreamRouter("stderr", sink, real_stderr)
    sys.stdout = out
    sys.stderr = err
    root = logging.getLogger()
    for h in root.handlers:
        h.addFilter(_OnlyOutsideExecutions())  # no record twice (handler + stderr router)
    root.addHandler(ExecutionLogHandler(sink))
    root.setLevel(logging.INFO)
    carry_context_into_threads()
    return out, err
