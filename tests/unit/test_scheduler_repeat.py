"""The scheduled handler's repeat of sub-minute tasks within one invocation (EventBridge
Scheduler fires at most once a minute), on a fake clock."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from functions.scheduler import repeated


class FakeClock:
    def __init__(self, run_seconds: float) -> None:
        self.now = 100.0
        self.run_seconds = run_seconds
        self.starts: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds

    def run(self) -> dict[str, Any]:
        self.starts.append(self.now)
        self.now += self.run_seconds
        return {"n": len(self.starts)}


def test_a_one_second_task_runs_on_a_fixed_pace_for_the_minute() -> None:
    c = FakeClock(run_seconds=0.2)
    results = repeated(c.run, 1.0, 59.0, c.clock, c.sleep)
    assert len(results) == 59 and results[-1] == {"n": 59}
    assert [round(t - 100.0, 6) for t in c.starts] == [float(i) for i in range(59)]


@given(st.floats(0.5, 30.0), st.floats(0.0, 60.0), st.floats(0.0, 5.0))
def test_runs_stay_within_the_budget_and_at_least_one_runs(every: float, budget: float, took: float) -> None:
    c = FakeClock(run_seconds=took)
    results = repeated(c.run, every, budget, c.clock, c.sleep)
    assert len(results) >= 1
    assert all(t - 100.0 < budget for t in c.starts[1:])  # every repeat starts inside the budget
    assert all(b - a >= min(every, took) - 1e-9 for a, b in zip(c.starts, c.starts[1:], strict=False))
    if took <= every:  # runs keep the pace: one per period
        assert len(results) <= max(1, int(budget / every) + 1)
