"""A service status change is one event for history and the platform topic, plus a notification
event (delivered to the service's own topic through the outbox) only for subscribed codes."""

from __future__ import annotations

from datetime import UTC, datetime

from modelfleet.control.notifications import Notifications
from modelfleet.core.lifecycle import DeploymentState
from modelfleet.core.service_state import ServiceState
from schemas.deployments import DeploymentKind, DeploymentRecord
from schemas.events import EventType

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOPIC = "arn:aws:sns:us-east-1:000000000000:mine"


def record(events: list[int] | None) -> DeploymentRecord:
    face: dict[str, object] = {"service_name": "mnist"}
    if events is not None:
        face["notification"] = {"topic_urn": TOPIC, "events": events}
    return DeploymentRecord(
        project_id="p",
        deployment_id="svc",
        uid="u1",
        kind=DeploymentKind.SERVICE,
        state=DeploymentState.STARTED,
        versions=[],
        created_at=T0,
        updated_at=T0,
        state_since=T0,
        face=face,
    )


def test_subscribed_codes_get_a_notification() -> None:
    evs = Notifications.status_events(T0, record([3, 11]), "deploying", ServiceState.RUNNING, "")
    assert [e.type for e in evs] == [EventType.SERVICE_STATUS_CHANGED, EventType.SERVICE_NOTIFICATION]
    note = evs[1]
    assert note.detail["topic_urn"] == TOPIC and note.detail["event_code"] == "3"
    assert note.aggregate_id == "notify:u1" and evs[0].aggregate_id == "u1"


def test_other_codes_and_statuses_only_go_to_history() -> None:
    assert len(Notifications.status_events(T0, record([3]), "running", ServiceState.CONCERNING, "x")) == 1
    assert (
        len(Notifications.status_events(T0, record([1, 3, 7, 11]), "running", ServiceState.STOPPED, "")) == 1
    )
    assert len(Notifications.status_events(T0, record(None), "deploying", ServiceState.RUNNING, "")) == 1


def test_a_rolled_back_update_notifies_failed_while_running() -> None:
    evs = Notifications.status_events(
        T0, record([1]), "running", ServiceState.RUNNING, "rolled back", event_code=1
    )
    assert evs[0].to_state == "running" and evs[0].detail["event_code"] == "1"
    assert evs[1].detail["event_code"] == "1" and evs[1].reason == "rolled back"
