"""The one resource spec: every table, queue, topic and bucket the platform uses.

The local bootstrap (modelfleet.local.bootstrap) and the Pulumi program (infra/) both read this,
so the two can never drift apart. Names get the stack prefix at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Index:
    name: str
    hash_key: str
    range_key: str | None = None


@dataclass(frozen=True)
class TableSpec:
    logical: str
    hash_key: str
    range_key: str | None = None
    indexes: tuple[Index, ...] = ()
    ttl_attribute: str | None = None
    durable: bool = True  # False: high-frequency, rebuildable state the local journal skips

    @property
    def attributes(self) -> tuple[str, ...]:
        names = [self.hash_key] + ([self.range_key] if self.range_key else [])
        for ix in self.indexes:
            names += [ix.hash_key] + ([ix.range_key] if ix.range_key else [])
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class QueueSpec:
    logical: str
    visibility_timeout_seconds: int = 30
    max_receive_count: int = 5
    retention_seconds: int = 4 * 86_400
    # The Lambda handler (a name in infra/handlers.py) that consumes the queue in the cloud through
    # an event source mapping; None: a long-running process polls it (the local gateway). The cloud
    # program raises the visibility timeout to at least 6x that function's timeout.
    consumer: str | None = None


@dataclass(frozen=True)
class TopicSpec:
    logical: str


@dataclass(frozen=True)
class BucketSpec:
    logical: str


@dataclass(frozen=True)
class Subscription:
    """A queue subscribed to a topic, optionally with a filter policy on message attributes."""

    topic: str
    queue: str
    filter_policy: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ScheduleSpec:
    """A task of the scheduled handler (functions/scheduler.py) and how often it runs.

    `setting` names the Settings field that overrides `every_seconds` (the local platform ticks
    that often). EventBridge Scheduler's finest rate is one minute, so the cloud program schedules
    `rate(1 minute)` and the handler repeats a faster task within its invocation.
    """

    task: str
    every_seconds: float
    setting: str | None = None


SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec("sweep_nodes", 1.0, setting="heartbeat_interval_seconds"),
    ScheduleSpec("relay_outbox", 5.0),
    ScheduleSpec("autoscale", 10.0, setting="autoscale_interval_seconds"),
    # /v1 services: status changes + notifications, rollout steps, auto-stop schedules.
    ScheduleSpec("services", 2.0, setting="service_tick_seconds"),
    ScheduleSpec("pipeline_schedules", 1.0),  # fire due periodic pipeline deployments
    ScheduleSpec("edge_rollouts", 1.0),  # advance fleet rollouts, mark silent edge nodes offline
)

TABLES: tuple[TableSpec, ...] = (
    TableSpec("projects", "project_id"),
    TableSpec("api_keys", "key_id", indexes=(Index("by_project", "project_id", "key_id"),)),
    TableSpec("models", "project_id", "model_id"),
    TableSpec("deployments", "project_id", "deployment_id", indexes=(Index("by_uid", "uid"),)),
    TableSpec(
        "routes", "deployment_uid", "route_key", indexes=(Index("by_node", "node_id", "deployment_uid"),)
    ),
    TableSpec("nodes", "node_id"),
    # Edge nodes, registration tokens, desired states, node status, edge services and rollouts.
    TableSpec("edge", "pk", "sk"),
    TableSpec("edge_status", "pk", "sk", durable=False),  # edge nodes' heartbeats and reports
    TableSpec("heartbeats", "node_id", ttl_attribute="expires_at", durable=False),
    # powertools idempotency records of creates sent with an Idempotency-Key header.
    TableSpec("idempotency", "id", ttl_attribute="expiration"),
    # Pipelines (the pipeline face), their deployments (by endpoint path: the endpoint-token route)
    # and executions (listed per pipeline and per deployment, newest first).
    TableSpec("pipelines", "project_id", "pipeline_name"),
    TableSpec(
        "pipeline_deployments",
        "project_id",
        "name",
        indexes=(Index("by_endpoint_path", "endpoint_url_path"),),
    ),
    TableSpec(
        "pipeline_executions",
        "project_id",
        "execution_id",
        indexes=(
            Index("by_pipeline", "pipeline_key", "created_at"),
            Index("by_deployment", "deployment_key", "created_at"),
        ),
    ),
    TableSpec(
        "events",
        "aggregate_id",
        "event_id",
        indexes=(Index("outbox", "outbox", "event_id"),),
        ttl_attribute="expires_at",
    ),
    # Batch services (modelfleet/batch): a job per service, and its planned tasks.
    TableSpec("batch_jobs", "project_id", "job_id"),
    TableSpec("batch_tasks", "job_id", "task_id"),
)

QUEUES: tuple[QueueSpec, ...] = (
    # The gateway's feed of state changes: it invalidates in-memory routing tables from it.
    QueueSpec(
        "gateway-invalidations", visibility_timeout_seconds=30, max_receive_count=3, retention_seconds=600
    ),
    # Batch tasks (and plan requests) for the batch workers; a task failing 3 receives goes to the
    # DLQ (poison input) and into its job's error report. Local workers set each message's
    # visibility to suit its chunk and extend it while they work; in the cloud the batch_planner
    # function consumes it (functions/batch.py, partial batch failures).
    QueueSpec("batch-tasks", visibility_timeout_seconds=60, max_receive_count=3, consumer="batch_planner"),
)

TOPICS: tuple[TopicSpec, ...] = (TopicSpec("events"),)

BUCKETS: tuple[BucketSpec, ...] = (BucketSpec("artifacts"),)

SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription(
        "events",
        "gateway-invalidations",
        {
            "event_type": [
                "deployment.state_changed",
                "deployment.deleted",
                "deployment.updated",
                "route.state_changed",
                "node.state_changed",
            ]
        },
    ),
)


@dataclass(frozen=True)
class MetricSpec:
    """A CloudWatch metric the platform publishes and the cloud program acts on."""

    namespace: str
    name: str
    unit: str = "None"
    dimension: str = "Stack"  # its value is the stack prefix (Names.prefix)


# The workers' demand signal: processors wanted by the allocations of cloud deployments divided by
# the processors of live cloud nodes (2.0: twice the nodes are needed). The autoscale task publishes
# it; the cloud program's ECS service scales on it.
WORKER_DEMAND = MetricSpec("modelfleet", "ProcessorDemandRatio")


@dataclass(frozen=True)
class Names:
    """Physical names for a stack: `<prefix>-<logical>`."""

    prefix: str = "modelfleet"
    # Bucket names are global: the cloud sets the real account id (MODELFLEET_ACCOUNT_ID).
    account: str = "000000000000"

    def table(self, logical: str) -> str:
        return f"{self.prefix}-{logical}"

    def queue(self, logical: str) -> str:
        return f"{self.prefix}-{logical}"

    def dlq(self, logical: str) -> str:
        return f"{self.prefix}-{logical}-dlq"

    def topic(self, logical: str) -> str:
        return f"{self.prefix}-{logical}"

    def bucket(self, logical: str, account: str | None = None, region: str = "us-east-1") -> str:
        return f"{self.prefix}-{logical}-{account or self.account}-{region}"


def table_spec(logical: str) -> TableSpec:
    return next(t for t in TABLES if t.logical == logical)
