"""Status events through an outbox.

A state change and its event are written in the same transaction (the event item carries
`outbox=pending`). After the commit the event is published to SNS and the mark removed. If the
publish fails or the process dies in between, `relay()` (run by the scheduler) publishes what is
still marked. So an event is never lost, and never published for a change that did not commit.
Consumers de-duplicate by `event_id` (delivery is at least once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from modelfleet.adapters.dynamo import Write
from modelfleet.adapters.errors import AdapterError
from modelfleet.adapters.sns import EventPublisher
from modelfleet.control.ids import event_id
from modelfleet.control.repository import Repository
from schemas.events import EventType, StatusEvent

log = logging.getLogger(__name__)


class EventLog:
    def __init__(
        self,
        repo: Repository,
        publisher: EventPublisher,
        keep_days: int = 30,
        deliverers: Mapping[EventType, Callable[[StatusEvent], None]] | None = None,
        publish: bool = True,
    ) -> None:
        self._repo = repo
        self._publisher = publisher
        self._publish = publish  # False: committed events wait in the outbox for relay()
        self._keep = timedelta(days=keep_days)
        # Event types delivered somewhere else than the platform topic (e.g. a service's own
        # notification topic); they go through the same outbox, so none is lost either.
        self.deliverers: dict[EventType, Callable[[StatusEvent], None]] = dict(deliverers or {})

    @staticmethod
    def new(
        now: datetime,
        type: EventType,
        project_id: str,
        aggregate_id: str,
        *,
        deployment_id: str | None = None,
        node_id: str | None = None,
        from_state: str | None = None,
        to_state: str | None = None,
        reason: str = "",
        detail: dict[str, str] | None = None,
    ) -> StatusEvent:
        return StatusEvent(
            event_id=event_id(now),
            type=type,
            project_id=project_id,
            aggregate_id=aggregate_id,
            deployment_id=deployment_id,
            node_id=node_id,
            from_state=from_state,
            to_state=to_state,
            reason=reason,
            at=now,
            detail=detail or {},
        )

    def writes(self, events: Sequence[StatusEvent]) -> list[Write]:
        return [self._repo.event_write(e, self._keep) for e in events]

    def publish(self, events: Sequence[StatusEvent]) -> None:
        """Publish committed events; whatever fails stays in the outbox for `relay()`."""
        if not self._publish:
            return
        for ev in events:
            try:
                self.deliverers.get(ev.type, self._publisher.publish)(ev)
                self._repo.store.write(self._repo.event_published(ev))
            except AdapterError as e:
                log.warning("event %s left in the outbox: %s", ev.event_id, e)

    def relay(self, now: datetime, older_than: timedelta = timedelta(seconds=5)) -> int:
        """Publish events left in the outbox (older than `older_than`, so in-flight ones are not raced)."""
        stale = [e for e in self._repo.outbox() if e.at <= now - older_than]
        self.publish(stale)
        return len(stale)

    def history(self, aggregate_id: str, limit: int = 100) -> list[StatusEvent]:
        return self._repo.events(aggregate_id, limit)
