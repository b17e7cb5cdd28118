"""The scheduled handler: EventBridge Scheduler invokes it in the cloud; the local platform's
scheduler fires it itself. Each event names one task."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from modelfleet.control.container import control_plane, utcnow

logger = Logger(service="modelfleet-scheduler")


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
        return {"task": task, "changes": changes}
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
