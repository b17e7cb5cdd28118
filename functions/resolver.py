"""A powertools HTTP resolver whose current event belongs to the calling thread.

powertools keeps the event being resolved in a class attribute (`BaseRouter.current_event`)
shared by every resolver in the process. On Lambda that is harmless: a process handles one
invocation at a time. The local gateway, though, runs handlers concurrently in threads (a node's
heartbeat while a `_start` waits for it), and there one request would read another's event: its
body, its query, its caller. This subclass keeps the event per thread; routers included in it
read it through `api_resolver`, so they see the right one too.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

_local = threading.local()


class ThreadSafeHttpResolver(APIGatewayHttpResolver):
    @property  # type: ignore[override]
    def current_event(self) -> BaseProxyEvent:
        event: BaseProxyEvent = _local.event
        return event

    @current_event.setter
    def current_event(self, value: BaseProxyEvent) -> None:
        _local.event = value

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        _local.event = self._to_proxy_event(dict(event))
        try:
            return super().resolve(event, context)
        finally:
            _local.event = None
