"""Service status notifications (`additional_properties.smn_notification`).

A service status change is one `service.status_changed` event (history + the platform topic);
if the service subscribed to the status's event id (1 failed, 3 running, 7 concerning,
11 pending), a second event, `service.notification`, is written in the same transaction. The
outbox delivers that one to the service's own topic (`deliver`, registered with the EventLog),
so a notification is never lost and never sent for a change that did not commit.
"""

from __future__ import annotations

import logging
from datetime import datetime

import orjson

from modelfleet.adapters.sns import TopicNotifier
from modelfleet.control.errors import InvalidRequest
from modelfleet.control.events import EventLog
from modelfleet.core.service_state import EVENT_CODES, ServiceState
from schemas.deployments import DeploymentRecord
from schemas.events import EventType, StatusEvent

log = logging.getLogger(__name__)


def subscription(rec: DeploymentRecord) -> tuple[str | None, frozenset[int]]:
    raw = rec.face.get("notification")
    if not isinstance(raw, dict):
        return None, frozenset()
    topic = raw.get("topic_urn")
    events = raw.get("events") or []
    return (str(topic) if topic else None), frozenset(int(e) for e in events)


class Notifications:
    def __init__(self, notifier: TopicNotifier) -> None:
        self._notifier = notifier

    def check_topic(self, topic_urn: str) -> None:
        """Refuse a topic that does not exist at creation, not at the first event."""
        if not self._notifier.exists(topic_urn):
            raise InvalidRequest(
                f"smn_notification topic '{topic_urn}' does not exist", code="ModelArts.3017"
            )

    @staticmethod
    def status_events(
        now: datetime,
        rec: DeploymentRecord,
        from_status: str | None,
        to_status: ServiceState,
        reason: str,
        event_code: int | None = None,
    ) -> list[StatusEvent]:
        """The status change event, plus the notification if the service subscribed to its code.
        `event_code` overrides the status's own code (a rolled-back update notifies 1 failed while
        the service keeps running on its old version)."""
        code = event_code if event_code is not None else EVENT_CODES.get(to_status)
        detail = {"service_status": to_status.value}
        if code is not None:
            detail["event_code"] = str(code)
        out = [
            EventLog.new(
                now,
                EventType.SERVICE_STATUS_CHANGED,
                rec.project_id,
                rec.uid,
                deployment_id=rec.deployment_id,
                from_state=from_status,
                to_state=to_status.value,
                reason=reason,
                detail=detail,
            )
        ]
        topic, events = subscription(rec)
        if topic and code is not None and code in events:
            out.append(
                EventLog.new(
                    now,
                    EventType.SERVICE_NOTIFICATION,
                    rec.project_id,
                    f"notify:{rec.uid}",
                    deployment_id=rec.deployment_id,
                    from_state=from_status,
                    to_state=to_status.value,
                    reason=reason,
                    detail={
                        "topic_urn": topic,
                        "event_code": str(code),
                        "service_name": str(rec.face.get("service_name", "")),
                    },
                )
            )
        return out

    def deliver(self, ev: StatusEvent) -> None:
        """Publish one notification event to its service's topic (raises AdapterError to retry)."""
        message = {
            "event_id": ev.event_id,
            "event": int(ev.detail.get("event_code", "0")),
            "service_id": ev.deployment_id,
            "service_name": ev.detail.get("service_name", ""),
            "project_id": ev.project_id,
            "status": ev.to_state,
            "previous_status": ev.from_state,
            "reason": ev.reason,
            "at": ev.at.isoformat(),
        }
        delivered = self._notifier.publish(
            ev.detail["topic_urn"],
            orjson.dumps(message).decode(),
            {"event": ev.detail.get("event_code", ""), "service_id": ev.deployment_id or ""},
        )
        if not delivered:  # the owner deleted the topic: drop it (kept in history), never retry
            log.warning(
                "service %s: topic %s is gone; notification dropped", ev.deployment_id, ev.detail["topic_urn"]
            )
