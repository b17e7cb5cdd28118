"""The scheduled handler: EventBridge Scheduler invokes it in the cloud; the local platform's
scheduler fires it itself. Each event names one task."""

from __future__ import annotations

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


def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    task = event.get("task")
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
