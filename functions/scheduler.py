"""The scheduled handler: EventBridge Scheduler invokes it in the cloud; the local platform's
scheduler fires it itself. Each event names one task.

EventBridge Scheduler fires at most once a minute. A task meant to run more often (the node
sweep every second, the outbox relay every 5 s) comes with its period, `every_seconds`, and the
invocation repeats it at that pace for most of the minute."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from modelfleet.adapters import aws
from modelfleet.adapters.cloudwatch import MetricPublisher
from modelfleet.config import Settings
from modelfleet.control.container import control_plane, utcnow
from modelfleet.control.demand import publish_worker_demand

logger = Logger(service="modelfleet-scheduler")
_publisher: MetricPublisher | None = None


def _metrics(settings: Settings) -> MetricPublisher:
    global _publisher
    if _publisher is None:
        _publisher = MetricPublisher(aws.client("cloudwatch", settings), settings.names.prefix)
    return _publisher


MINUTE = 60.0
SAFETY_SECONDS = 3.0  # left of the function's timeout when the last run starts


def repeated(
    run: Callable[[], dict[str, Any]],
    every_seconds: float,
    budget_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """Run, then again every `every_seconds` (on a fixed pace from the first start) while the next
    run starts within `budget_seconds` of the first; at least once."""
    start = clock()
    results = [run()]
    while True:
        next_at = start + every_seconds * len(results)
        if next_at - start >= budget_seconds or clock() - start >= budget_seconds:
            return results
        sleep(max(0.0, next_at - clock()))
        results.append(run())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    every = float(event.get("every_seconds") or 0)
    if not 0 < every < MINUTE:
        return run_task(event.get("task"))
    remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else MINUTE
    budget = min(MINUTE - every, remaining - SAFETY_SECONDS)
    runs = repeated(lambda: run_task(event.get("task")), every, max(budget, 0.0))
    return {**runs[-1], "runs": len(runs)}


def run_task(task: Any) -> dict[str, Any]:
    cp = control_plane()
    now = utcnow()
    if task == "sweep_nodes":
        lost = cp.nodes.sweep(now)
        if lost:
            logger.info("nodes lost", extra={"nodes": lost})
        return {"task": task, "lost": lost}
    if task == "autoscale":
        changes = cp.autoscaler.tick(now)
        settings = Settings.from_env()
        demand = publish_worker_demand(
            cp.repo, _metrics(settings), now, settings.node_lost_after_seconds
        )  # the cloud's workers scale on it
        return {"task": task, "changes": changes, "processor_demand_ratio": demand}
    if task == "edge_rollouts":
        from modelfleet.control.edge import edge_control

        return {"task": task, **edge_control().tick(now)}
    if task == "pipeline_schedules":
        from modelfleet.faces.pipelines.service import pipeline_face

        return {"task": task, "fired": pipeline_face().fire_schedules()}
    if task == "services":
        return {"task": task, **cp.services.tick(now)}
    if task == "relay_outbox":
        return {"task": task, "published": cp.events.relay(now)}
    raise ValueError(f"unknown scheduled task {task!r}")
