"""Wires adapters and services together from Settings. One instance per process (Lambda
container, local gateway), made on first use."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from modelfleet.adapters import aws
from modelfleet.adapters.dynamo import DynamoStore
from modelfleet.adapters.node_http import NodeNudger
from modelfleet.adapters.s3 import ArtifactStore
from modelfleet.adapters.sns import EventPublisher
from modelfleet.config import Settings
from modelfleet.control.autoscaling import Autoscaler
from modelfleet.control.deployments import DeploymentService
from modelfleet.control.events import EventLog
from modelfleet.control.keys import KeyService
from modelfleet.control.nodes import NodeService
from modelfleet.control.planning import Planner
from modelfleet.control.registry import ModelRegistry
from modelfleet.control.repository import Repository
from modelfleet.core.autoscale import AutoscaleSettings


def utcnow() -> datetime:
    """The one clock read of the control plane; services get `now` passed in."""
    return datetime.now(UTC)


@dataclass
class ControlPlane:
    settings: Settings
    repo: Repository
    events: EventLog
    keys: KeyService
    models: ModelRegistry
    planner: Planner
    deployments: DeploymentService
    nodes: NodeService
    artifacts: ArtifactStore
    nudger: NodeNudger
    autoscaler: Autoscaler

    @classmethod
    def build(cls, settings: Settings) -> ControlPlane:
        names = settings.names
        repo = Repository(DynamoStore(aws.client("dynamodb", settings), names))
        sns = aws.client("sns", settings)
        events = EventLog(
            repo,
            EventPublisher(sns, EventPublisher.topic_arn_for(sns, names.topic("events"))),
            settings.event_ttl_days,
        )
        artifacts = ArtifactStore(
            aws.client("s3", settings), names.bucket("artifacts", region=settings.region)
        )
        planner = Planner(repo, events, settings.node_lost_after_seconds)
        nudger = NodeNudger()
        deployments = DeploymentService(repo, events, planner, nudger.nudge)
        autoscale = AutoscaleSettings(
            scale_to_zero_after=timedelta(seconds=settings.scale_to_zero_after_seconds),
            scale_up_cooldown=timedelta(seconds=settings.autoscale_cooldown_seconds),
        )
        return cls(
            settings=settings,
            repo=repo,
            events=events,
            keys=KeyService(repo),
            models=ModelRegistry(repo, artifacts, events, settings.artifact_url_ttl_seconds),
            planner=planner,
            deployments=deployments,
            nodes=NodeService(
                repo,
                events,
                planner,
                artifacts,
                settings.heartbeat_interval_seconds,
                settings.node_lost_after_seconds,
                settings.artifact_url_ttl_seconds,
            ),
            artifacts=artifacts,
            nudger=nudger,
            autoscaler=Autoscaler(repo, deployments, autoscale),
        )


_lock = threading.Lock()
_instance: ControlPlane | None = None


def control_plane() -> ControlPlane:
    global _instance
    with _lock:
        if _instance is None:
            _instance = ControlPlane.build(Settings.from_env())
        return _instance
