"""Settings, read once from the environment at the edge (handlers, processes), never in the core."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from modelfleet.resources import Names


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def _grants(raw: str) -> dict[str, frozenset[str]]:
    """``"default=bucket-a,bucket-b;team2=bucket-c;*=shared"``: project -> granted buckets."""
    out: dict[str, frozenset[str]] = {}
    for part in filter(None, (p.strip() for p in raw.split(";"))):
        project, _, buckets = part.partition("=")
        out[project.strip()] = frozenset(b.strip() for b in buckets.split(",") if b.strip())
    return out


@dataclass(frozen=True)
class Settings:
    stack: str = "modelfleet"
    region: str = "us-east-1"
    aws_endpoint: str | None = None  # the moto server locally; None in the cloud
    artifact_url_ttl_seconds: int = 3600
    heartbeat_interval_seconds: float = 1.0
    node_lost_after_seconds: float = 5.0
    max_body_bytes: int = 8 * 1024 * 1024
    event_ttl_days: int = 30
    autoscale_interval_seconds: float = 10.0  # Elasticsearch's adaptive-allocations trigger time
    scale_to_zero_after_seconds: float = 900.0
    autoscale_cooldown_seconds: float = 300.0
    # Services (/v1): how often the `services` task runs (status, rollouts, auto-stop), and how
    # many seconds a schedule's MINUTE lasts (60; a test platform compresses auto-stop time).
    service_tick_seconds: float = 2.0
    service_seconds_per_minute: float = 60.0
    # Batch services: the buckets each project may read and write ("*": every project), and an
    # operator-enabled local data root for file:// paths (None: refused).
    batch_buckets: dict[str, frozenset[str]] = field(default_factory=dict)
    batch_local_root: str | None = None
    batch_chunk_rows: int = 10_000  # CSV rows per task
    batch_plan_piece_bytes: int = 8 << 20  # the planner reads a CSV in ranged pieces of this size
    batch_files_per_task: int = 32
    batch_visibility_floor_seconds: int = 30  # a dead worker's task comes back after about this
    batch_worker_threads: int = 1  # onnxruntime threads per batch worker process
    # The events topic's ARN when the deployment knows it (the cloud sets it in every function);
    # None: looked up by name. `publish_events` False leaves committed events in the outbox for
    # the scheduler's relay: the invoke router, in a VPC with no route to SNS, never waits on it.
    events_topic_arn: str | None = None
    publish_events: bool = True
    names: Names = field(default_factory=Names)

    @classmethod
    def from_env(cls) -> Settings:
        stack = os.environ.get("MODELFLEET_STACK", "modelfleet")
        return cls(
            stack=stack,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            aws_endpoint=os.environ.get("MODELFLEET_AWS_ENDPOINT") or None,
            events_topic_arn=os.environ.get("MODELFLEET_EVENTS_TOPIC_ARN") or None,
            publish_events=os.environ.get("MODELFLEET_PUBLISH_EVENTS", "1") != "0",
            artifact_url_ttl_seconds=_int("MODELFLEET_ARTIFACT_URL_TTL", 3600),
            heartbeat_interval_seconds=_float("MODELFLEET_HEARTBEAT_INTERVAL", 1.0),
            node_lost_after_seconds=_float("MODELFLEET_NODE_LOST_AFTER", 5.0),
            max_body_bytes=_int("MODELFLEET_MAX_BODY_BYTES", 8 * 1024 * 1024),
            autoscale_interval_seconds=_float("MODELFLEET_AUTOSCALE_INTERVAL", 10.0),
            scale_to_zero_after_seconds=_float("MODELFLEET_SCALE_TO_ZERO_AFTER", 900.0),
            autoscale_cooldown_seconds=_float("MODELFLEET_AUTOSCALE_COOLDOWN", 300.0),
            service_tick_seconds=_float("MODELFLEET_SERVICE_TICK", 2.0),
            service_seconds_per_minute=_float("MODELFLEET_SERVICE_SECONDS_PER_MINUTE", 60.0),
            batch_buckets=_grants(os.environ.get("MODELFLEET_BATCH_BUCKETS", "")),
            batch_local_root=os.environ.get("MODELFLEET_BATCH_LOCAL_ROOT") or None,
            batch_chunk_rows=_int("MODELFLEET_BATCH_CHUNK_ROWS", 10_000),
            batch_plan_piece_bytes=_int("MODELFLEET_BATCH_PLAN_PIECE_BYTES", 8 << 20),
            batch_files_per_task=_int("MODELFLEET_BATCH_FILES_PER_TASK", 32),
            batch_visibility_floor_seconds=_int("MODELFLEET_BATCH_VISIBILITY_SECONDS", 30),
            batch_worker_threads=_int("MODELFLEET_BATCH_WORKER_THREADS", 1),
            names=Names(prefix=stack, account=os.environ.get("MODELFLEET_ACCOUNT_ID") or Names.account),
        )
