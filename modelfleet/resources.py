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
    TableSpec("heartbeats", "node_id", ttl_attribute="expires_at", durable=False),
    # powertools idempotency records of creates sent with an Idempotency-Key header.
    TableSpec("idempotency", "id", ttl_attribute="expiration"),
    TableSpec(
        "events",
        "aggregate_id",
        "event_id",
        indexes=(Index("outbox", "outbox", "event_id"),),
        ttl_attribute="expires_at",
    ),
)

QUEUES: tuple[QueueSpec, ...] = (
    # The gateway's feed of state changes: it invalidates in-memory routing tables from it.
    QueueSpec(
        "gateway-invalidations", visibility_timeout_seconds=30, max_receive_count=3, retention_seconds=600
    ),
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
                "route.state_changed",
                "node.state_changed",
            ]
        },
    ),
)


@dataclass(frozen=True)
class Names:
    """Physical names for a stack: `<prefix>-<logical>`."""

    prefix: str = "modelfleet"

    def table(self, logical: str) -> str:
        return f"{self.prefix}-{logical}"

    def queue(self, logical: str) -> str:
        return f"{self.prefix}-{logical}"

    def dlq(self, logical: str) -> str:
        return f"{self.prefix}-{logical}-dlq"

    def topic(self, logical: str) -> str:
        return f"{self.prefix}-{logical}"

    def bucket(self, logical: str, account: str = "000000000000", region: str = "us-east-1") -> str:
        return f"{self.prefix}-{logical}-{account}-{region}"


def table_spec(logical: str) -> TableSpec:
    return next(t for t in TABLES if t.logical == logical)
