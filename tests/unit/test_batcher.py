"""Dynamic batching and allocations over real ONNX models (built with onnx.helper).

Batches are made deterministic without timing: a gate holds the first model run, so the
requests submitted meanwhile are all queued when the allocation becomes free again.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelfleet.core.placement import Priority
from modelfleet.runtime.backends import LoadedModel, OnnxModel, load_model
from modelfleet.worker.batcher import (
    Batcher,
    BatchSettings,
    DeploymentUnloaded,
    InferenceTimeout,
    Outcome,
    QueueFull,
    RecentPeak,
    batch_key,
    batch_share,
    signature_allows_batching,
)
from modelfleet.worker.loaded import LoadedDeployment
from schemas.models import ModelFormat
from schemas.nodes import AssignedModel, Assignment
from tests.unit import onnx_builders

WAIT = 20.0  # bound of every wait: a hung batcher fails the test instead of hanging it


class Gated:
    """A model whose first run waits for `release`, so that requests queue up behind it.
    Records the rows of every run."""

    def __init__(self, inner: LoadedModel) -> None:
        self.inner = inner
        self.signature = inner.signature
        self.entered = threading.Event()
        self.release = threading.Event()
        self.runs: list[int] = []
        self._lock = threading.Lock()

    def run(self, inputs: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        with self._lock:
            first = not self.entered.is_set()
            self.entered.set()
            self.runs.append(next(iter(inputs.values())).shape[0])
        if first:
            assert self.release.wait(WAIT)
        return self.inner.run(inputs)

    def close(self) -> None:
        self.inner.close()


class Answers:
    """Collects each request's outcome and fails if one is answered twice."""

    def __init__(self) -> None:
        self.got: dict[int, Outcome] = {}
        self.twice: list[int] = []
        self._cond = threading.Condition()

    def to(self, index: int) -> Any:
        def done(outcome: Outcome) -> None:
            with self._cond:
                if index in self.got:
                    self.twice.append(index)
                self.got[index] = outcome
                self._cond.notify_all()

        return done

    def wait(self, count: int) -> dict[int, Outcome]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.got) >= count, WAIT), f"{len(self.got)} of {count}"
        assert not self.twice
        return self.got


def _onnx(path: Path) -> OnnxModel:
    model = load_model("onnx", path, None, 1)
    assert isinstance(model, OnnxModel)
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("onnx")
    return {
        "linear": onnx_builders.linear(d / "linear.onnx"),
        "fixed": onnx_builders.linear(d / "fixed.onnx", batch=1),
        "doubler": onnx_builders.doubler(d / "doubler.onnx"),
        "lookup": onnx_builders.lookup(d / "lookup.onnx"),
    }


def _batcher(model: LoadedModel, size: int = 8, delay_ms: float = 0.0, **kw: Any) -> Batcher:
    kw.setdefault("allocations", 1)
    kw.setdefault("queue_capacity", 1000)
    rows = kw.pop("max_rows", 4096)
    return Batcher(model, settings=BatchSettings(size, delay_ms, rows), **kw)


def _held(batcher: Batcher, gate: Gated, first: Mapping[str, npt.NDArray[Any]], answers: Answers) -> None:
    """Submit `first` and wait until the allocation is running it (held by the gate)."""
    batcher.submit(first, answers.to(0))
    assert gate.entered.wait(WAIT)


def test_batched_outputs_equal_unbatched_and_every_request_is_answered_once(models: dict[str, Path]) -> None:
    inner = _onnx(models["linear"])
    gate = Gated(inner)
    batcher = _batcher(gate, size=16)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((int(rng.integers(1, 4)), 4)).astype(np.float32) for _ in range(9)]
    answers = Answers()
    try:
        _held(batcher, gate, {"x": xs[0]}, answers)
        for i, x in enumerate(xs[1:], start=1):
            batcher.submit({"x": x}, answers.to(i))
        gate.release.set()
        got = answers.wait(len(xs))
    finally:
        batcher.close()
    for i, x in enumerate(xs):
        result = got[i]
        assert not isinstance(result, BaseException), result
        np.testing.assert_allclose(result["y"], inner.run({"x": x})["y"], rtol=1e-6, atol=1e-6)
    assert gate.runs == [len(xs[0]), sum(len(x) for x in xs[1:])]  # the eight queued ones ran once
    stats = batcher.stats.snapshot()
    assert stats.batches == 2 and stats.batched_requests == 9 and stats.inference_count == 9


def test_a_failing_request_fails_alone(models: dict[str, Path]) -> None:
    inner = _onnx(models["lookup"])
    gate = Gated(inner)
    batcher = _batcher(gate)
    requests = [np.array([0]), np.array([1, 2]), np.array([99]), np.array([3])]
    answers = Answers()
    try:
        _held(batcher, gate, {"idx": requests[0]}, answers)
        for i, idx in enumerate(requests[1:], start=1):
            batcher.submit({"idx": idx}, answers.to(i))
        gate.release.set()
        got = answers.wait(len(requests))
    finally:
        batcher.close()
    bad = got[2]
    assert isinstance(bad, BaseException) and "99" in str(bad)
    for i in (0, 1, 3):
        result = got[i]
        assert not isinstance(result, BaseException), result
        np.testing.assert_array_equal(result["y"], inner.run({"idx": requests[i]})["y"])
    assert batcher.stats.snapshot().error_count == 1


def test_requests_past_their_deadline_are_answered_with_a_timeout(models: dict[str, Path]) -> None:
    gate = Gated(_onnx(models["linear"]))
    batcher = _batcher(gate)
    answers = Answers()
    x = np.ones((1, 4), np.float32)
    try:
        _held(batcher, gate, {"x": x}, answers)
        batcher.submit({"x": x}, answers.to(1), deadline=time.monotonic())  # expires while queued
        batcher.submit({"x": x}, answers.to(2), deadline=time.monotonic() + 3600)
        gate.release.set()
        got = answers.wait(3)
    finally:
        batcher.close()
    assert isinstance(got[1], InferenceTimeout)
    assert not isinstance(got[0], BaseException) and not isinstance(got[2], BaseException)
    stats = batcher.stats.snapshot()
    assert stats.timeout_count == 1 and stats.inference_count == 2


def test_different_trailing_shapes_run_in_separate_batches(models: dict[str, Path]) -> None:
    gate = Gated(_onnx(models["doubler"]))
    batcher = _batcher(gate)
    shapes = [(1, 2), (2, 3), (1, 2), (1, 3), (3, 2)]
    xs = [np.full(s, i, np.float32) for i, s in enumerate(shapes)]
    answers = Answers()
    try:
        _held(batcher, gate, {"x": xs[0]}, answers)
        for i, x in enumerate(xs[1:], start=1):
            batcher.submit({"x": x}, answers.to(i))
        gate.release.set()
        got = answers.wait(len(xs))
    finally:
        batcher.close()
    for i, x in enumerate(xs):
        result = got[i]
        assert not isinstance(result, BaseException), result
        np.testing.assert_array_equal(result["y"], 2 * x)
    # the first alone; then the oldest queued (t=3) with the other t=3; then the two t=2
    assert gate.runs == [1, 3, 4]


def test_a_model_with_a_fixed_batch_dimension_is_never_batched(models: dict[str, Path]) -> None:
    gate = Gated(_onnx(models["fixed"]))
    assert not signature_allows_batching(gate.signature)
    batcher = _batcher(gate, size=32)
    assert not batcher.batching
    answers = Answers()
    x = np.ones((1, 4), np.float32)
    try:
        _held(batcher, gate, {"x": x}, answers)
        for i in range(1, 4):
            batcher.submit({"x": x}, answers.to(i))
        gate.release.set()
        got = answers.wait(4)
    finally:
        batcher.close()
    assert not any(isinstance(o, BaseException) for o in got.values())
    assert gate.runs == [1, 1, 1, 1]


def test_batch_size_and_rows_are_capped(models: dict[str, Path]) -> None:
    gate = Gated(_onnx(models["linear"]))
    batcher = _batcher(gate, size=3, max_rows=4)
    rows = [1, 1, 1, 1, 1, 2, 2, 5, 1]
    answers = Answers()
    try:
        _held(batcher, gate, {"x": np.ones((rows[0], 4), np.float32)}, answers)
        for i, r in enumerate(rows[1:], start=1):
            batcher.submit({"x": np.ones((r, 4), np.float32)}, answers.to(i))
        gate.release.set()
        answers.wait(len(rows))
    finally:
        batcher.close()
    # three requests at most; four rows at most, except a request larger than that, alone
    assert gate.runs == [1, 3, 3, 2, 5, 1]


def test_a_positive_delay_waits_for_more_requests_but_not_past_a_full_batch(models: dict[str, Path]) -> None:
    inner = _onnx(models["linear"])
    gate = Gated(inner)
    gate.release.set()
    batcher = _batcher(gate, size=2, delay_ms=60_000)
    answers = Answers()
    x = np.ones((1, 4), np.float32)
    try:
        batcher.submit({"x": x}, answers.to(0))
        batcher.submit({"x": x}, answers.to(1))  # fills the batch: it runs without the delay
        got = answers.wait(2)
    finally:
        batcher.close()
    assert not any(isinstance(o, BaseException) for o in got.values())
    assert gate.runs == [2]


def test_a_full_queue_refuses_and_closing_answers_the_queued(models: dict[str, Path]) -> None:
    gate = Gated(_onnx(models["linear"]))
    batcher = _batcher(gate, queue_capacity=2)
    answers = Answers()
    x = np.ones((1, 4), np.float32)
    _held(batcher, gate, {"x": x}, answers)
    batcher.submit({"x": x}, answers.to(1))
    batcher.submit({"x": x}, answers.to(2))
    with pytest.raises(QueueFull):
        batcher.submit({"x": x}, answers.to(3))
    assert batcher.stats.snapshot().rejected_execution_count == 1
    assert batcher.stats.snapshot(pending=batcher.pending).number_of_pending_requests == 3
    batcher.close()
    gate.release.set()
    got = answers.wait(3)
    assert 3 not in got
    assert isinstance(got[1], DeploymentUnloaded) and isinstance(got[2], DeploymentUnloaded)
    assert not isinstance(got[0], BaseException)  # the running one finished
    with pytest.raises(DeploymentUnloaded):
        batcher.submit({"x": x}, answers.to(4))


def test_asyncio_callers_get_their_outputs(models: dict[str, Path]) -> None:
    inner = _onnx(models["linear"])
    batcher = _batcher(inner, allocations=2)
    xs = [np.full((i + 1, 4), i, np.float32) for i in range(6)]

    async def run_all() -> list[dict[str, npt.NDArray[Any]]]:
        return await asyncio.gather(*(batcher.run({"x": x}) for x in xs))

    try:
        results = asyncio.run(run_all())
    finally:
        batcher.close()
    for x, result in zip(xs, results, strict=True):
        np.testing.assert_allclose(result["y"], inner.run({"x": x})["y"], rtol=1e-6, atol=1e-6)


def test_run_inline_only_in_an_idle_allocation_and_within_the_allocation_count(
    models: dict[str, Path],
) -> None:
    inner = _onnx(models["linear"])
    gate = Gated(inner)
    x = np.ones((1, 4), np.float32)
    assert _batcher(inner, inline_max_ms=0.0).run_inline({"x": x}) is None  # not fast enough
    assert _batcher(inner, inline_max_ms=math.inf, low_priority=True).run_inline({"x": x}) is None
    assert _batcher(inner, delay_ms=1.0, inline_max_ms=math.inf).run_inline({"x": x}) is None
    batcher = _batcher(gate, inline_max_ms=math.inf)
    answers = Answers()
    try:
        held: list[Outcome | None] = []
        caller = threading.Thread(target=lambda: held.append(batcher.run_inline({"x": x})))
        caller.start()
        assert gate.entered.wait(WAIT)  # the caller's thread runs it, in the one allocation
        assert batcher.run_inline({"x": x}) is None  # no idle allocation left
        batcher.submit({"x": x}, answers.to(1))
        assert batcher.pending == 2 and gate.runs == [1]  # queued, not run beside the inline one
        gate.release.set()
        caller.join(WAIT)
        got = answers.wait(1)
        assert not isinstance(held[0], BaseException) and held[0] is not None
        assert not isinstance(got[1], BaseException)
        result = batcher.run_inline({"x": x})  # idle again: runs here
        assert isinstance(result, dict)
        np.testing.assert_allclose(result["y"], inner.run({"x": x})["y"], rtol=1e-6)
        assert isinstance(batcher.run_inline({"x": x}, deadline=time.monotonic() - 1), InferenceTimeout)
    finally:
        batcher.close()
    stats = batcher.stats.snapshot()
    assert stats.inference_count == 3 and stats.timeout_count == 1 and stats.number_of_pending_requests == 0


def test_batch_keys() -> None:
    a = np.zeros((2, 3), np.float32)
    assert batch_key({"x": a}) == (2, (("x", "<f4", (3,)),))
    assert batch_key({"x": a, "m": np.zeros((3, 3), np.float32)})[1] is None  # rows differ
    assert batch_key({"x": np.zeros((0, 3), np.float32)})[1] is None
    assert batch_key({"x": np.float32(1.0) * np.ones(())})[1] is None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    requests=st.lists(st.tuples(st.integers(1, 4), st.sampled_from([2, 3])), min_size=1, max_size=14),
    size=st.integers(1, 6),
    max_rows=st.integers(1, 9),
    allocations=st.integers(1, 3),
)
def test_random_request_mixes(
    models: dict[str, Path], requests: list[tuple[int, int]], size: int, max_rows: int, allocations: int
) -> None:
    gate = Gated(_onnx(models["doubler"]))
    batcher = _batcher(gate, size=size, max_rows=max_rows, allocations=allocations)
    xs = [np.arange(r * t, dtype=np.float32).reshape(r, t) + i for i, (r, t) in enumerate(requests)]
    answers = Answers()
    try:
        _held(batcher, gate, {"x": xs[0]}, answers)
        for i, x in enumerate(xs[1:], start=1):
            batcher.submit({"x": x}, answers.to(i))
        gate.release.set()
        got = answers.wait(len(xs))
    finally:
        batcher.close()
    for i, x in enumerate(xs):
        result = got[i]
        assert not isinstance(result, BaseException), result
        np.testing.assert_array_equal(result["y"], 2 * x)
    stats = batcher.stats.snapshot()
    assert stats.batched_requests == len(xs) and stats.batches == len(gate.runs)
    assert sum(gate.runs) == sum(len(x) for x in xs)
    assert all(rows <= max(max_rows, max(r for r, _ in requests)) for rows in gate.runs)
    if size == 1:
        assert stats.batches == len(xs)


# --- waiting for a batch's share -------------------------------------------------------------------
# A frozen clock: the share wait is bounded by clock time, so with it a batch waits for its share
# for as long as it takes (the test supplies the request), and a wrong wait hangs the test (WAIT).
FROZEN = 1000.0


def _frozen() -> float:
    return FROZEN


def test_a_batch_waits_for_its_share_of_the_requests_recently_in_flight(models: dict[str, Path]) -> None:
    gate = Gated(_onnx(models["linear"]))  # a large fraction: the wait is not cut short as too brief
    batcher = _batcher(gate, size=16, clock=_frozen, share_wait_fraction=1e6)
    x = np.ones((1, 4), np.float32)
    answers = Answers()
    try:
        _held(batcher, gate, {"x": x}, answers)
        for i in range(1, 8):  # 8 in flight at once: one running, seven queued
            batcher.submit({"x": x}, answers.to(i))
        gate.release.set()
        answers.wait(1)
        # the first client's next request comes back while its allocation waits for 8
        batcher.submit({"x": x}, answers.to(8))
        got = answers.wait(9)
    finally:
        batcher.close()
    assert not any(isinstance(o, BaseException) for o in got.values())
    assert gate.runs == [1, 8]  # without the wait: [1, 7, 1], every request behind another batch


def test_a_share_wait_too_short_to_gather_anything_is_skipped(models: dict[str, Path]) -> None:
    gate = Gated(_onnx(models["linear"]))  # a tiny fraction: the wait would be far under a millisecond
    batcher = _batcher(gate, size=16, clock=_frozen, share_wait_fraction=1e-9)
    x = np.ones((1, 4), np.float32)
    answers = Answers()
    try:
        _held(batcher, gate, {"x": x}, answers)
        for i in range(1, 8):
            batcher.submit({"x": x}, answers.to(i))
        gate.release.set()
        answers.wait(8)  # the seven queued ran without waiting for the eighth
        batcher.submit({"x": x}, answers.to(8))
        got = answers.wait(9)
    finally:
        batcher.close()
    assert not any(isinstance(o, BaseException) for o in got.values())
    assert gate.runs == [1, 7, 1]


def test_requests_one_at_a_time_never_wait_for_a_share(models: dict[str, Path]) -> None:
    gate = Gated(_onnx(models["linear"]))
    gate.release.set()
    batcher = _batcher(gate, size=16, allocations=2, clock=_frozen)
    answers = Answers()
    try:
        for i in range(5):  # each answered before the next: the share stays 1
            batcher.submit({"x": np.full((1, 4), i, np.float32)}, answers.to(i))
            answers.wait(i + 1)
    finally:
        batcher.close()
    assert gate.runs == [1] * 5


@given(in_flight=st.integers(0, 10_000), allocations=st.integers(1, 64), max_batch_size=st.integers(1, 1024))
def test_a_share_covers_the_requests_in_flight_within_the_batch_size(
    in_flight: int, allocations: int, max_batch_size: int
) -> None:
    share = batch_share(in_flight, allocations, max_batch_size)
    assert 1 <= share <= max_batch_size
    if share < max_batch_size:  # the allocations' shares together hold every request in flight
        assert share * allocations >= in_flight
        assert share == 1 or (share - 1) * allocations < in_flight  # and not one more each


@given(
    notes=st.lists(st.tuples(st.floats(0, 20), st.integers(0, 100)), max_size=30).map(sorted),
    at=st.floats(0, 25),
)
def test_a_recent_peak_is_the_highest_value_of_this_window_and_the_one_before(
    notes: list[tuple[float, int]], at: float
) -> None:
    peak = RecentPeak(2.0)
    for when, value in notes:
        peak.note(when, value)
    now = max(at, notes[-1][0]) if notes else at  # the clock never goes back
    window = int(now // 2.0)
    expected = max((v for t, v in notes if int(t // 2.0) >= window - 1), default=0)
    assert peak.peak(now) == expected


# --- allocations ---------------------------------------------------------------------------------


class Rendezvous:
    """Runs meet at a barrier of `parties`: it only opens if that many run at the same time.
    Records each run's thread, session and nice value."""

    def __init__(self, inner: OnnxModel, parties: int) -> None:
        self.inner = inner
        self.signature = inner.signature
        self.barrier = threading.Barrier(parties, timeout=WAIT)
        self.seen: list[tuple[int, int, int]] = []

    def run(self, inputs: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        tid = threading.get_native_id()
        self.seen.append((tid, id(self.inner._session), os.getpriority(os.PRIO_PROCESS, tid)))
        self.barrier.wait()
        return self.inner.run(inputs)

    def close(self) -> None:
        self.inner.close()


def _assignment(allocations: int, priority: Priority = Priority.NORMAL) -> Assignment:
    return Assignment(
        deployment_uid="u",
        project_id="p",
        deployment_id="d",
        version_id="1",
        target_allocations=allocations,
        threads_per_allocation=1,
        priority=priority,
        queue_capacity=100,
        max_batch_size=1,
        model=AssignedModel(
            model_id="m", format=ModelFormat.ONNX, entry_file="linear.onnx", signature=None, files=[]
        ),
    )


def _run_concurrently(loaded: LoadedDeployment, count: int) -> dict[int, Outcome]:
    answers = Answers()
    for i in range(count):
        loaded.submit({"x": np.full((1, 4), i, np.float32)}, answers.to(i), math.inf)
    return answers.wait(count)


def test_four_allocations_run_at_once_over_one_shared_session(models: dict[str, Path]) -> None:
    loaded = LoadedDeployment.load(_assignment(4), models["linear"])
    assert isinstance(loaded.model, OnnxModel) and loaded.allocations == 4
    loaded.close()
    model = _onnx(models["linear"])
    shared = Rendezvous(model, parties=4)
    loaded = LoadedDeployment(_assignment(4), shared)
    try:
        got = _run_concurrently(loaded, 4)
        assert not any(isinstance(o, BaseException) for o in got.values())
        threads = {tid for tid, _, _ in shared.seen}
        sessions = {sid for _, sid, _ in shared.seen}
        assert len(threads) == 4 and sessions == {id(model._session)}
        # resizing keeps the model: down to 2, back to 4, and 4 run at once again
        loaded.resize(_assignment(2))
        assert loaded.allocations == 2 and loaded.model is shared
        loaded.resize(_assignment(4))
        shared.seen.clear()
        got = _run_concurrently(loaded, 4)
        assert not any(isinstance(o, BaseException) for o in got.values())
        assert {sid for _, sid, _ in shared.seen} == {id(model._session)}
        assert loaded.stats_snapshot().inference_count == 8
    finally:
        loaded.close()


def test_low_priority_allocations_run_at_a_lower_os_priority(models: dict[str, Path]) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    shared = Rendezvous(_onnx(models["linear"]), parties=2)
    loaded = LoadedDeployment(_assignment(2, Priority.LOW), shared)
    try:
        got = _run_concurrently(loaded, 2)
        assert not any(isinstance(o, BaseException) for o in got.values())
        assert all(nice >= max(base, 10) for _, _, nice in shared.seen)
        assert os.getpriority(os.PRIO_PROCESS, 0) == base  # the process itself is untouched
        loaded.resize(_assignment(2, Priority.NORMAL))  # new threads at the normal priority
        shared.seen.clear()
        _run_concurrently(loaded, 2)
        assert all(nice == base for _, _, nice in shared.seen)
    finally:
        loaded.close()
