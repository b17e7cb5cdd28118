"""The workers' demand signal, the I/O side: read the deployments and live cloud nodes, ask
`core.demand`, publish the ratio as the CloudWatch metric the cloud's worker service scales on
(`resources.WORKER_DEMAND`). Run with the scheduled `autoscale` task."""

from __future__ import annotations

from datetime import datetime

from modelfleet.adapters.cloudwatch import MetricPublisher
from modelfleet.control.planning import INACTIVE, load_snapshot
from modelfleet.control.repository import Repository
from modelfleet.core.demand import Want, processor_demand_ratio
from modelfleet.resources import WORKER_DEMAND
from schemas.nodes import NodeKind


def worker_demand(repo: Repository, now: datetime, lost_after_seconds: float) -> float:
    snap = load_snapshot(repo)
    wants = [
        Want(v.allocations, v.threads_per_allocation)
        for d in snap.deployments
        if d.state not in INACTIVE
        for v in d.versions
    ]
    live = [
        n.processors
        for n in snap.nodes
        if n.kind == NodeKind.CLOUD and snap.node_is_live(n, now, lost_after_seconds)
    ]
    return processor_demand_ratio(wants, live)


def publish_worker_demand(
    repo: Repository, publisher: MetricPublisher, now: datetime, lost_after_seconds: float
) -> float:
    ratio = worker_demand(repo, now, lost_after_seconds)
    publisher.publish(WORKER_DEMAND, ratio)
    return ratio
