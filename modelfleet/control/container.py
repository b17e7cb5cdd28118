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
from modelfleet.adapters.scheduler import OneTimeSchedules
from modelfleet.adapters.sns import EventPublisher, TopicNotifier
from modelfleet.config import Settings
from modelfleet.control.autoscaling import Autoscaler
from modelfleet.control.deployments import DeploymentService
from modelfleet.control.events import EventLog
from modelfleet.control.keys import KeyService
from modelfleet.control.nodes import NodeService
from modelfleet.control.notifications import Notifications
from modelfleet.control.planning import Planner
from modelfleet.control.registry import ModelRegistry
from modelfleet.control.repository import Repository
from modelfleet.control.services import ServiceControl
from modelfleet.core.autoscale import AutoscaleSettings
from schemas.events import EventType


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
    services: ServiceControl

    @classmethod
    def build(cls, settings: Settings) -> ControlPlane:
        names = settings.names
        repo = Repository(DynamoStore(aws.client("dynamodb", settings), names))
        sns = aws.client("sns", settings)
        topic = settings.events_topic_arn or EventPublisher.topic_arn_for(sns, names.topic("events"))
        events = EventLog(
            repo, EventPublisher(sns, topic), settings.event_ttl_days, publish=settings.publish_events
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
            services=_services(settings, repo, events, planner, deployments, nudger, sns),
        )


def _services(
    settings: Settings,
    repo: Repository,
    events: EventLog,
    planner: Planner,
    deployments: DeploymentService,
    nudger: NodeNudger,
    sns: object,
) -> ServiceControl:
    """Services (/v1): their SMN notifications go through the outbox to each service's topic."""
    notifications = Notifications(TopicNotifier(sns))
    events.deliverers[EventType.SERVICE_NOTIFICATION] = notifications.deliver
    schedules = None
    if settings.aws_endpoint is None:  # the cloud: one-time EventBridge schedules (moto never fires them)
        account, stack = settings.names.account, settings.stack
        schedules = OneTimeSchedules(
            aws.client("scheduler", settings),
            f"{stack}-services",
            f"arn:aws:lambda:{settings.region}:{account}:function:{stack}-scheduler",
            f"arn:aws:iam::{account}:role/{stack}-scheduler",
        )
    return ServiceControl(
        repo,
        events,
        planner,
        deployments,
        nudger.nudge,
        notifications,
        settings.service_seconds_per_minute,
        schedules,
    )


_lock = threading.Lock()
_instance: ControlPlane | None = None


def control_plane() -> ControlPlane:
    global _instance
    with _lock:
        if _instance is None:
            _instance = ControlPlane.build(Settings.from_env())
        return _instance
