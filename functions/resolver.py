"""A powertools HTTP resolver whose current event and context belong to the calling thread.

powertools keeps the event being resolved in a class attribute (`BaseRouter.current_event`)
shared by every resolver in the process. On Lambda that is harmless: a process handles one
invocation at a time. The local gateway, though, runs handlers concurrently in threads (a node's
heartbeat while a `_start` waits for it), and there one request would read another's event: its
body, its query, its caller. The resolver's `context` dict (where validation keeps the matched
route) is shared the same way, and each resolve clears it at its end, under other requests'
feet. This subclass keeps both per thread; routers included in it read them through
`api_resolver`, so they see the right ones too.
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

    @property
    def context(self) -> dict[str, Any]:
        mine: dict[str, Any] | None = getattr(_local, "context", None)
        if mine is None:
            mine = _local.context = {}
        return mine

    @context.setter
    def context(self, value: dict[str, Any]) -> None:
        _local.context = value

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        _local.event = self._to_proxy_event(dict(event))
        try:
            return super().resolve(event, context)
        finally:
            _local.event = None
