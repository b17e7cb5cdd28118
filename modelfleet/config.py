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
    names: Names = field(default_factory=Names)

    @classmethod
    def from_env(cls) -> Settings:
        stack = os.environ.get("MODELFLEET_STACK", "modelfleet")
        return cls(
            stack=stack,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            aws_endpoint=os.environ.get("MODELFLEET_AWS_ENDPOINT") or None,
            artifact_url_ttl_seconds=_int("MODELFLEET_ARTIFACT_URL_TTL", 3600),
            heartbeat_interval_seconds=_float("MODELFLEET_HEARTBEAT_INTERVAL", 1.0),
            node_lost_after_seconds=_float("MODELFLEET_NODE_LOST_AFTER", 5.0),
            max_body_bytes=_int("MODELFLEET_MAX_BODY_BYTES", 8 * 1024 * 1024),
            autoscale_interval_seconds=_float("MODELFLEET_AUTOSCALE_INTERVAL", 10.0),
            scale_to_zero_after_seconds=_float("MODELFLEET_SCALE_TO_ZERO_AFTER", 900.0),
            autoscale_cooldown_seconds=_float("MODELFLEET_AUTOSCALE_COOLDOWN", 300.0),
            names=Names(prefix=stack),
        )
