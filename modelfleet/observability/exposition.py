"""`GET /metrics`: Prometheus exposition (prometheus-client) of the gateway's counters and the
nodes' stats, scoped to the caller's project.

A scrape authenticates like any request (`Authorization: Bearer id:secret`, Prometheus's
`authorization` scrape setting): a platform admin (an admin key of `_system`) sees every
project's series, any other key only its own project's, so deployment names never cross
tenants. Node health (nodes are shared) is shown to every caller.

The gateway's counters are read from memory; the nodes' stats (queue depth, rejections, cache
hits: what each node sent with its last heartbeat) and node health are read from the store at
scrape time only, never per request.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelfleet.control.container import control_plane
from modelfleet.core.lifecycle import NodeState
from modelfleet.gateway.auth import AuthFailure
from modelfleet.gateway.faces import FaceMount, GatewayContext
from modelfleet.observability.metrics import BUCKETS, InferenceMetrics
from schemas.deployments import DeploymentRecord
from schemas.keys import Principal, Role
from schemas.nodes import NodeRecord
from schemas.stats import InferenceStats

SYSTEM_PROJECT = "_system"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def sees_everything(who: Principal) -> bool:
    return who.project_id == SYSTEM_PROJECT and Role.ADMIN in who.roles


@dataclass(frozen=True)
class StoreSnapshot:
    """What the store knows at scrape time: nodes, their last heartbeat, their stats."""

    nodes: list[NodeRecord]
    heartbeats: dict[str, float]  # node id -> epoch seconds
    stats: dict[str, dict[str, InferenceStats]]  # node id -> "<uid>/<version>" -> counters
    deployments: dict[str, DeploymentRecord]  # uid -> record (only the caller's projects)


def read_store(project_id: str | None) -> StoreSnapshot:
    """Blocking reads; run it in a thread. `project_id` None reads every project's deployments."""
    repo = control_plane().repo
    records = repo.all_deployments() if project_id is None else repo.list_deployments(project_id)
    return StoreSnapshot(
        nodes=repo.list_nodes(),
        heartbeats=repo.heartbeats(),
        stats=repo.node_stats(),
        deployments={d.uid: d for d in records},
    )


class PlatformCollector(Collector):
    """One scrape's metric families, for one caller's scope (`project_id` None: every project)."""

    def __init__(
        self, metrics: InferenceMetrics, store: StoreSnapshot, project_id: str | None, now: float
    ) -> None:
        self._metrics = metrics
        self._store = store
        self._project = project_id
        self._now = now

    def collect(self) -> Iterator[Metric]:
        yield from self._gateway()
        yield from self._node_stats()
        yield from self._node_health()

    def _gateway(self) -> Iterable[Metric]:
        labels = ["project", "deployment", "version"]
        requests = CounterMetricFamily(
            "modelfleet_inference_requests",
            "Inference answers of the gateway, by HTTP status.",
            labels=[*labels, "code"],
        )
        rejected = CounterMetricFamily(
            "modelfleet_inference_rejections",
            "Inference requests refused with 429 (queue full).",
            labels=labels,
        )
        latency = HistogramMetricFamily(
            "modelfleet_inference_latency_seconds",
            "Time from a request's arrival at the gateway to its answer.",
            labels=labels,
        )
        for (project, deployment, version), s in sorted(self._metrics.series.items()):
            if self._project is not None and project != self._project:
                continue
            values = [project, deployment, version]
            for status, n in sorted(s.by_status.items()):
                requests.add_metric([*values, str(status)], n)
            rejected.add_metric(values, s.by_status.get(429, 0))
            cumulative, buckets = 0, []
            for bound, n in zip([*map(str, BUCKETS), "+Inf"], s.bucket_counts, strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            latency.add_metric(values, buckets, s.latency_sum)
        return [requests, rejected, latency]

    def _node_stats(self) -> Iterable[Metric]:
        labels = ["project", "deployment", "version", "node"]
        queue = GaugeMetricFamily(
            "modelfleet_queue_depth", "Requests queued or running on a node (last heartbeat).", labels=labels
        )
        families = {
            "inference_count": CounterMetricFamily(
                "modelfleet_node_inferences", "Inferences a node ran (cache hits included).", labels=labels
            ),
            "error_count": CounterMetricFamily(
                "modelfleet_node_inference_errors", "Inferences that failed on a node.", labels=labels
            ),
            "rejected_execution_count": CounterMetricFamily(
                "modelfleet_node_rejections",
                "Requests a node refused because the queue was full.",
                labels=labels,
            ),
            "inference_cache_hit_count": CounterMetricFamily(
                "modelfleet_cache_hits", "Inferences answered from a node's inference cache.", labels=labels
            ),
        }
        for node_id, routes in sorted(self._store.stats.items()):
            for route, stats in sorted(routes.items()):
                uid, _, version = route.partition("/")
                d = self._store.deployments.get(uid)
                if d is None:
                    continue  # another project's, or deleted since
                values = [d.project_id, d.deployment_id, version, node_id]
                queue.add_metric(values, stats.number_of_pending_requests)
                for attr, family in families.items():
                    family.add_metric(values, getattr(stats, attr))
        return [queue, *families.values()]

    def _node_health(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("modelfleet_node_up", "1 when the node is ready.", labels=["node", "state"])
        age = GaugeMetricFamily(
            "modelfleet_node_heartbeat_age_seconds",
            "Seconds since the node's last heartbeat.",
            labels=["node"],
        )
        for n in sorted(self._store.nodes, key=lambda n: n.node_id):
            if self._project is not None and n.project_id not in (None, self._project):
                continue  # another project's edge node
            up.add_metric([n.node_id, n.state.value], 1.0 if n.state == NodeState.READY else 0.0)
            beat = self._store.heartbeats.get(n.node_id)
            if beat is not None:
                age.add_metric([n.node_id], max(0.0, self._now - beat))
        return [up, age]


def exposition(metrics: InferenceMetrics, store: StoreSnapshot, project_id: str | None, now: float) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector(metrics, store, project_id, now))
    return generate_latest(registry)


def metrics_mount(ctx: GatewayContext) -> FaceMount:
    """`/metrics` as a gateway face (a `MountFactory`)."""
    metrics: InferenceMetrics = ctx.plane.metrics

    async def endpoint(request: Request) -> Response:
        try:
            who = await ctx.auth.authenticate(request.headers)
        except AuthFailure as e:
            return Response(f"{e.message}\n", status_code=e.status, media_type="text/plain")
        project = None if sees_everything(who) else who.project_id
        store = await run_in_threadpool(read_store, project)
        body = exposition(metrics, store, project, time.time())
        return Response(body, media_type=CONTENT_TYPE)

    def error(status: int, code: str, message: str) -> Response:
        return Response(f"{code}: {message}\n", status_code=status, media_type="text/plain")

    return FaceMount(prefix="/metrics", routes=[Route("/metrics", endpoint)], error=error)
