"""Queue and Parallel execution management: which execution starts next."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.pipelines.queueing import ExecutionQueue, Outcome, Start


def test_queue_mode_runs_one_at_a_time_in_arrival_order() -> None:
    q = ExecutionQueue.for_mode(parallel=False, max_parallel=8)
    for e in "abc":
        q.enqueue(e)
    assert q.to_start() == [Start("a", 1)]
    assert q.to_start() == []  # a is still running
    assert q.finished("a", ok=True) is Outcome.SUCCEEDED
    assert q.to_start() == [Start("b", 1)]


def test_a_failure_is_retried_right_after_the_next_one_before_the_others_once() -> None:
    q = ExecutionQueue.for_mode(parallel=False, max_parallel=1)
    for e in "abc":
        q.enqueue(e)
    q.to_start()
    assert q.finished("a", ok=False) is Outcome.RETRYING
    assert q.to_start() == [Start("b", 1)]  # the next one starts ...
    assert q.finished("b", ok=True) is Outcome.SUCCEEDED
    assert q.to_start() == [Start("a", 2)]  # ... then the failed one, before c
    assert q.finished("a", ok=False) is Outcome.FAILED  # one retry only
    assert q.to_start() == [Start("c", 1)]


def test_a_failure_with_nothing_waiting_is_retried_at_once() -> None:
    q = ExecutionQueue.for_mode(parallel=False, max_parallel=1)
    q.enqueue("a")
    q.to_start()
    assert q.finished("a", ok=False) is Outcome.RETRYING
    assert q.to_start() == [Start("a", 2)]


def test_a_failure_that_must_not_be_retried_is_final() -> None:
    q = ExecutionQueue.for_mode(parallel=False, max_parallel=1)
    q.enqueue("a")
    q.to_start()
    assert q.finished("a", ok=False, retryable=False) is Outcome.FAILED
    assert q.idle


def test_parallel_mode_starts_up_to_n_and_does_not_retry() -> None:
    q = ExecutionQueue.for_mode(parallel=True, max_parallel=4)
    for i in range(6):
        q.enqueue(f"e{i}")
    assert [s.execution_id for s in q.to_start()] == ["e0", "e1", "e2", "e3"]
    assert q.finished("e2", ok=False) is Outcome.FAILED
    assert [s.execution_id for s in q.to_start()] == ["e4"]


@given(
    st.booleans(),
    st.integers(min_value=1, max_value=5),
    st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=10)), min_size=1, max_size=40),
)
@settings(max_examples=300)
def test_never_over_capacity_and_every_execution_ends_exactly_once(
    parallel: bool, n: int, script: list[tuple[bool, int]]
) -> None:
    q = ExecutionQueue.for_mode(parallel, n)
    capacity = n if parallel else 1
    ended: list[str] = []
    ids = [f"e{i}" for i in range(len(script))]
    outcomes = dict(zip(ids, script, strict=True))
    for e in ids:
        q.enqueue(e)
    attempts: dict[str, int] = {}
    while not q.idle:
        for s in q.to_start():
            attempts[s.execution_id] = s.attempt
        running = q.running()
        assert 0 < len(running) <= capacity
        pick = running[outcomes[running[0]][1] % len(running)]
        ok = outcomes[pick][0] or attempts[pick] == 2  # a retry succeeds
        result = q.finished(pick, ok)
        if result is not Outcome.RETRYING:
            ended.append(pick)
        else:  # retried right behind the next waiting execution, or at once when none waits
            waiting = q.waiting()
            assert not parallel and waiting[min(1, len(waiting) - 1)] == pick
    assert sorted(ended) == sorted(ids)
