"""A deployment version's allocations and its request queue, with dynamic batching.

Allocations are threads over the one loaded model (ONNX Runtime's and TorchScript's `run` are
thread-safe), so N allocations never load N copies. Requests wait in one bounded queue; an
allocation that becomes free takes the oldest request and, when batching is on, the queued
requests that can join it:

* batching needs a model whose every input and output has a variable first dimension (-1);
  requests join only if their inputs have the same names, dtypes and trailing shapes, and the
  batch stays within `max_batch_size` requests and `max_batch_rows` rows;
* `max_batch_delay_ms` = 0 batches only what is already queued, so an idle deployment adds no
  latency; a positive delay lets the batch wait for more, counted from its oldest request's
  arrival (one allocation forms a batch at a time, the others wait for it);
* a batch also waits for its *share*: the requests recently in flight at once (the peak of
  queued + running over the last one to two seconds) divided by the allocations, but at most
  `SHARE_WAIT_FRACTION` of a batch's measured run time. Clients that keep N requests in flight
  (pipelines, indexing workers, load generators) send the next one as soon as an answer comes
  back, a round trip after their batch ended; without this wait a free allocation starts with
  whatever came back first, and batches stay split (e.g. 8 + 8 for 16 clients on one
  allocation) so every request also waits for another batch and each partial batch pays the
  model's fixed cost per run. At low concurrency the share is 1 and nothing ever waits; when the
  expected requests do not come, a batch loses at most that fraction of a run. A fast model's
  batches never wait (a cap under `SHARE_WAIT_MIN_S`): such a wait costs a thread wake-up (Linux
  timer slack alone is 50 us) and blocks the inline path while it lasts, for a batch of a model
  whose runs are a small part of a request's cost (digits: ~10 us of ~300 us);
* the batch is concatenated along dim 0, run once, and its outputs are split back by rows; if the
  batched run fails, its requests are run one by one, so only a bad request fails;
* a request whose deadline passed before it ran is answered with `InferenceTimeout`.

At low load a caller may instead `run_inline`: the request runs on the caller's thread in an
idle allocation (counted like one, so no more than N run at once), skipping the hand-off to an
allocation thread; only for fast models at normal priority without a batching delay.

Every request is answered exactly once: with its outputs or an exception, on the allocation
thread through its `done` callback, or (for asyncio callers) by resolving its future with one
`call_soon_threadsafe` per batch and event loop. Low priority allocations run at a lower OS
priority (nice 10), so normal deployments on the node win the processors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from modelfleet.runtime.backends import LoadedModel
from modelfleet.worker.stats import DeploymentStats
from schemas.tensors import Signature

log = logging.getLogger(__name__)

Arrays = Mapping[str, npt.NDArray[Any]]
Outcome = dict[str, npt.NDArray[Any]] | BaseException
BatchKey = tuple[tuple[str, str, tuple[int, ...]], ...]
LOW_PRIORITY_NICE = 10
INLINE_MAX_MS = 1.0  # run_inline only for models that take less than this per request
SHARE_WAIT_FRACTION = 0.15  # a batch waits for its share at most this fraction of a batch's run time
SHARE_WAIT_MIN_S = 0.0005  # shorter share waits are skipped: they cost more than they can gather
PEAK_WINDOW_S = 1.0  # recent concurrency: the peak of queued + running over the last 1 to 2 windows


class QueueFull(Exception):
    """The deployment's queue is full: retry later (HTTP 429)."""


class InferenceTimeout(Exception):
    """The request's deadline passed before an allocation could run it."""


class DeploymentUnloaded(Exception):
    """The deployment was unloaded from this node before the request ran."""


@dataclass(frozen=True, slots=True)
class BatchSettings:
    max_batch_size: int = 1  # 1 = batching off
    max_batch_delay_ms: float = 0.0
    max_batch_rows: int = 4096  # a single larger request still runs (alone)


def signature_allows_batching(signature: Signature) -> bool:
    """Every input and output has a variable first dimension."""
    return all(spec.shape and spec.shape[0] == -1 for spec in (*signature.inputs, *signature.outputs))


def batch_key(inputs: Arrays) -> tuple[int, BatchKey | None]:
    """The request's rows and what a batch partner must match (None: it runs alone)."""
    rows = -1
    parts = []
    for name, array in inputs.items():
        if array.ndim == 0 or (rows != -1 and array.shape[0] != rows):
            return 0, None
        rows = array.shape[0]
        parts.append((name, array.dtype.str, array.shape[1:]))
    return (rows, tuple(parts)) if rows > 0 else (0, None)


def batch_share(in_flight: int, allocations: int, max_batch_size: int) -> int:
    """The requests one batch expects: an allocation's share of those in flight at once, at least
    1 and at most max_batch_size."""
    return max(1, min(max_batch_size, -(-in_flight // max(1, allocations))))


class RecentPeak:
    """The highest value noted in the current window of `window_s` seconds or the one before it,
    so a peak is remembered for one to two windows, then forgotten. Not thread-safe (the batcher
    calls it under its lock)."""

    __slots__ = ("_current", "_previous", "_window", "_window_s")

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._window = -1
        self._previous = 0
        self._current = 0

    def note(self, now: float, value: int) -> None:
        window = int(now // self._window_s)
        if window > self._window:
            self._previous = self._current if window == self._window + 1 else 0
            self._current = 0
            self._window = window
        self._current = max(self._current, value)

    def peak(self, now: float) -> int:
        window = int(now // self._window_s)
        if window <= self._window:
            return max(self._previous, self._current)
        return self._current if window == self._window + 1 else 0


@dataclass(slots=True, eq=False)
class Job:
    inputs: Arrays
    rows: int
    key: BatchKey | None
    deadline: float
    enqueued: float
    done: Callable[[Outcome], None] | None = None
    future: asyncio.Future[dict[str, npt.NDArray[Any]]] | None = None
    loop: asyncio.AbstractEventLoop | None = None


@dataclass(slots=True, eq=False)
class _Allocation:
    low_priority: bool
    retired: bool = False
    thread: threading.Thread | None = field(default=None, repr=False)


class Batcher:
    def __init__(
        self,
        model: LoadedModel,
        *,
        allocations: int,
        queue_capacity: int,
        settings: BatchSettings,
        low_priority: bool = False,
        stats: DeploymentStats | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = "alloc",
        inline_max_ms: float = INLINE_MAX_MS,
        share_wait_fraction: float = SHARE_WAIT_FRACTION,
    ) -> None:
        self.model = model
        self.stats = stats or DeploymentStats()
        self._batchable = signature_allows_batching(model.signature)
        self._clock = clock
        self._name = name
        self._inline_max_ms = inline_max_ms
        self._run_ms = math.inf  # moving average of a request's run time, for run_inline
        self._share_wait_fraction = share_wait_fraction
        self._batch_run_s = math.nan  # moving average of a batch's run time, bounds the share wait
        self._in_flight = RecentPeak(PEAK_WINDOW_S)  # queued + running, noted at each submit
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[Job] = deque()
        self._running = 0  # requests being run
        self._busy = 0  # allocations in use: by their threads, or by a caller in run_inline
        self._forming = False
        self._closed = False
        self._allocations: list[_Allocation] = []
        self._capacity = queue_capacity
        self._settings = settings
        self._low_priority = low_priority
        self.configure(allocations, queue_capacity, settings, low_priority)

    # --- configuration ----------------------------------------------------------------------------
    @property
    def allocations(self) -> int:
        return len(self._allocations)

    @property
    def pending(self) -> int:
        """Requests queued or running now."""
        return len(self._queue) + self._running

    @property
    def batching(self) -> bool:
        return self._batchable and self._settings.max_batch_size > 1

    def configure(
        self, allocations: int, queue_capacity: int, settings: BatchSettings, low_priority: bool
    ) -> None:
        """Resize to `allocations` threads over the same model; other settings apply at once.
        A priority change replaces the threads (a thread's nice value can only go up)."""
        allocations = max(1, allocations)
        with self._cond:
            if self._closed:
                return
            self._capacity = queue_capacity
            self._settings = settings
            if low_priority != self._low_priority:
                for a in self._allocations:
                    a.retired = True
                self._allocations = []
                self._low_priority = low_priority
            while len(self._allocations) > allocations:
                self._allocations.pop().retired = True
            while len(self._allocations) < allocations:
                a = _Allocation(low_priority)
                a.thread = threading.Thread(
                    target=self._serve, args=(a,), name=f"{self._name}-{len(self._allocations)}", daemon=True
                )
                self._allocations.append(a)
                a.thread.start()
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the allocations; queued requests are answered with DeploymentUnloaded."""
        with self._cond:
            self._closed = True
            drained = list(self._queue)
            self._queue.clear()
            for a in self._allocations:
                a.retired = True
            self._cond.notify_all()
        self._deliver(
            drained, [DeploymentUnloaded("the deployment was unloaded from this node")] * len(drained)
        )

    # --- submitting ---------------------------------------------------------------------------------
    def submit(
        self,
        inputs: Arrays,
        done: Callable[[Outcome], None] | None = None,
        *,
        deadline: float = math.inf,
        future: asyncio.Future[dict[str, npt.NDArray[Any]]] | None = None,
    ) -> None:
        """Queue a request; `done` (or `future`) gets its outcome exactly once. Raises QueueFull
        or DeploymentUnloaded instead of queueing (and then never calls `done`)."""
        rows, key = batch_key(inputs) if self._batchable else (0, None)
        loop = future.get_loop() if future is not None else None
        job = Job(inputs, rows, key, deadline, self._clock(), done, future, loop)
        self.stats.record_access()
        with self._cond:
            if self._closed:
                raise DeploymentUnloaded("the deployment was unloaded from this node")
            if len(self._queue) >= self._capacity:
                self.stats.record_rejected()
                raise QueueFull(f"inference queue is full ({self._capacity} waiting); retry later")
            self._queue.append(job)
            self._in_flight.note(job.enqueued, len(self._queue) + self._running)
            if self._forming:
                self._cond.notify_all()  # the allocation forming a batch must see it
            else:
                self._cond.notify()

    def run_inline(self, inputs: Arrays, deadline: float = math.inf) -> Outcome | None:
        """Run a request on the calling thread, in an idle allocation, when nothing is queued and
        the model is fast; None otherwise (then `submit` it). This skips the hand-off to an
        allocation thread, which on a small machine costs as much as running a small model; a
        slow model (or low priority, or a batching delay) always goes through the queue."""
        if self._run_ms > self._inline_max_ms or self._low_priority or self._settings.max_batch_delay_ms:
            return None
        with self._cond:
            if self._closed or self._queue or self._forming or self._busy >= len(self._allocations):
                return None
            self._busy += 1
            self._running += 1
        self.stats.record_access()
        if deadline <= self._clock():
            self._done_running(1)
            self.stats.record_timeout()
            return InferenceTimeout("the request's deadline passed before it could run")
        started = time.perf_counter()
        try:
            outcome = self._run_one(inputs)
        finally:
            self._done_running(1)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self._note_run_time(elapsed_ms)
        failed = isinstance(outcome, BaseException)
        self.stats.record_run(int(not failed), int(failed), elapsed_ms)
        return outcome

    async def run(self, inputs: Arrays, deadline: float = math.inf) -> dict[str, npt.NDArray[Any]]:
        future: asyncio.Future[dict[str, npt.NDArray[Any]]] = asyncio.get_running_loop().create_future()
        self.submit(inputs, deadline=deadline, future=future)
        return await future

    # --- allocation threads -------------------------------------------------------------------------
    def _serve(self, me: _Allocation) -> None:
        if me.low_priority:
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOW_PRIORITY_NICE)
            except OSError as e:  # pragma: no cover - platforms without per-thread nice
                log.warning("could not lower the priority of a low priority allocation: %s", e)
        while True:
            taken = self._take(me)
            if taken is None:
                return
            batch, refused, reason = taken
            if refused:
                if isinstance(reason, InferenceTimeout):
                    self.stats.record_timeout(len(refused))
                self._deliver(refused, [reason] * len(refused))
            if batch:
                self._run(batch)

    def _take(self, me: _Allocation) -> tuple[list[Job], list[Job], BaseException] | None:
        """The next batch, plus requests refused meanwhile (expired, or unloaded) and why."""
        cond = self._cond
        with cond:
            while not self._queue or self._forming or self._busy >= len(self._allocations):
                if me.retired:
                    return None
                cond.wait()
            if me.retired:
                cond.notify()  # pass the queued work on to a live allocation
                return None
            now = self._clock()
            expired: list[Job] = []
            first = None
            while self._queue:
                job = self._queue.popleft()
                if job.deadline <= now:
                    expired.append(job)
                else:
                    first = job
                    break
            timeout = InferenceTimeout("the request's deadline passed while it waited in the queue")
            if first is None:
                return [], expired, timeout
            batch = [first]
            settings = self._settings
            if first.key is not None and settings.max_batch_size > 1:
                rows = self._gather(batch, first.rows, now, expired)
                delay_until = first.enqueued + settings.max_batch_delay_ms / 1000.0
                share = batch_share(
                    self._in_flight.peak(now), len(self._allocations), settings.max_batch_size
                )
                share_wait = self._share_wait_s()
                until = delay_until
                if len(batch) < share and share_wait >= SHARE_WAIT_MIN_S:
                    until = max(delay_until, now + share_wait)
                if self._room(batch, rows) and now < until:
                    self._forming = True
                    try:
                        while self._room(batch, rows) and now < until and not (self._closed or me.retired):
                            cond.wait(until - now)
                            now = self._clock()
                            rows = self._gather(batch, rows, now, expired)
                            if len(batch) >= share:
                                until = delay_until
                    finally:
                        self._forming = False
                        if self._queue:
                            cond.notify()
                    if self._closed:
                        return [], batch + expired, DeploymentUnloaded("the deployment was unloaded")
            self._running += len(batch)
            self._busy += 1
            return batch, expired, timeout

    def _share_wait_s(self) -> float:
        """How long a batch may wait for its share: a fraction of a batch's measured run time
        (none before the first run)."""
        run = self._batch_run_s
        return 0.0 if math.isnan(run) else self._share_wait_fraction * run

    def _room(self, batch: list[Job], rows: int) -> bool:
        s = self._settings
        return len(batch) < s.max_batch_size and rows < s.max_batch_rows

    def _gather(self, batch: list[Job], rows: int, now: float, expired: list[Job]) -> int:
        """Move queued requests that can join `batch` into it (in arrival order); returns its rows."""
        key = batch[0].key
        queue = self._queue
        if not queue:
            return rows
        skipped: deque[Job] = deque()
        limit = self._settings.max_batch_rows
        while queue and len(batch) < self._settings.max_batch_size:
            job = queue.popleft()
            if job.key != key:
                skipped.append(job)
            elif job.deadline <= now:
                expired.append(job)
            elif rows + job.rows > limit:
                skipped.append(job)
                break
            else:
                batch.append(job)
                rows += job.rows
        if skipped:
            skipped.extend(queue)
            self._queue = skipped
        return rows

    def _run(self, batch: list[Job]) -> None:
        started = time.perf_counter()
        outcomes = [self._run_one(batch[0].inputs)] if len(batch) == 1 else self._run_batched(batch)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self._done_running(len(batch))
        failed = sum(isinstance(o, BaseException) for o in outcomes)
        self._note_run_time(elapsed_ms / len(batch))
        self._note_batch_run_time(elapsed_ms / 1000.0)
        self.stats.record_run(len(batch) - failed, failed, elapsed_ms)
        self._deliver(batch, outcomes)

    def _done_running(self, requests: int) -> None:
        with self._cond:
            self._running -= requests
            self._busy -= 1
            if self._queue:
                self._cond.notify()

    def _note_run_time(self, ms: float) -> None:
        self._run_ms = ms if self._run_ms == math.inf else 0.8 * self._run_ms + 0.2 * ms

    def _note_batch_run_time(self, seconds: float) -> None:
        run = self._batch_run_s
        self._batch_run_s = seconds if math.isnan(run) else 0.8 * run + 0.2 * seconds

    def _run_one(self, inputs: Arrays) -> Outcome:
        try:
            return self.model.run(inputs)
        except Exception as e:
            return e

    def _run_batched(self, batch: list[Job]) -> list[Outcome]:
        total = sum(job.rows for job in batch)
        try:
            feed = {name: np.concatenate([job.inputs[name] for job in batch]) for name in batch[0].inputs}
            merged = self.model.run(feed)
            if any(a.ndim == 0 or a.shape[0] != total for a in merged.values()):
                raise ValueError("an output's first dimension is not the batch's rows")
        except Exception:
            return [self._run_one(job.inputs) for job in batch]  # so that only the bad request fails
        outcomes: list[Outcome] = []
        start = 0
        for job in batch:
            stop = start + job.rows
            outcomes.append({name: array[start:stop] for name, array in merged.items()})
            start = stop
        return outcomes

    def _deliver(self, jobs: list[Job], outcomes: list[Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
        for job, outcome in zip(jobs, outcomes, strict=True):
            if job.future is not None and job.loop is not None:
                by_loop.setdefault(job.loop, []).append((job.future, outcome))
            elif job.done is not None:
                try:
                    job.done(outcome)
                except Exception:
                    log.exception("answering a request failed")
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(_resolve, items)


def _resolve(items: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    for future, outcome in items:
        if future.done():  # the caller gave up (cancelled)
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
