"""Status events: every state change is one, kept in history and published to SNS."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from schemas.common import Record


class EventType(StrEnum):
    DEPLOYMENT_STATE_CHANGED = "deployment.state_changed"
    DEPLOYMENT_DELETED = "deployment.deleted"
    ROUTE_STATE_CHANGED = "route.state_changed"
    NODE_STATE_CHANGED = "node.state_changed"
    MODEL_STATE_CHANGED = "model.state_changed"
    DEPLOYMENT_UPDATED = "deployment.updated"  # versions/weights changed (a rollout step)
    SERVICE_STATUS_CHANGED = "service.status_changed"  # /v1 services: deploying, running, ...
    SERVICE_NOTIFICATION = "service.notification"  # delivered to the service's own SNS topic
    EDGE_SERVICE_STATE_CHANGED = "edge_service.state_changed"
    EDGE_NODE_STATE_CHANGED = "edge_node.state_changed"
    BATCH_JOB_STATE_CHANGED = "batch_job.state_changed"


class StatusEvent(Record):
    event_id: str  # time-ordered: "<ms since epoch, 13 digits>-<random>"
    type: EventType
    project_id: str
    aggregate_id: str  # deployment uid, node id or model id
    deployment_id: str | None = None
    node_id: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    reason: str = ""
    at: datetime
    detail: dict[str, str] = Field(default_factory=dict)

    def attributes(self) -> dict[str, str]:
        """SNS message attributes, for subscription filter policies."""
        attrs = {"event_type": self.type.value, "project_id": self.project_id}
        if self.deployment_id:
            attrs["deployment_id"] = self.deployment_id
        if self.node_id:
            attrs["node_id"] = self.node_id
        if self.to_state:
            attrs["state"] = self.to_state
        return attrs


class EventList(Record):
    events: list[StatusEvent]
