"""The invoke router: the cloud's data plane, a Lambda in the workers' VPC behind the HTTP API's
`/v2/*`, `_infer` and `/metrics` routes.

It runs the local gateway's own data plane (`modelfleet.gateway.app.create_invoke_app`): the key
checked from its verdict cache, the deployment looked up in a routing table kept in memory across
warm invocations, the body forwarded untouched to a worker's data port over the framed TCP link,
and the worker's answer relayed. Mangum turns the API Gateway event into an ASGI call; one event
loop per process keeps the node links open between invocations.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aws_lambda_powertools import Logger
from mangum import Mangum

from modelfleet.config import Settings
from modelfleet.gateway.app import create_invoke_app

logger = Logger(service="modelfleet-invoke")
_adapter: Mangum | None = None
_loop: asyncio.AbstractEventLoop | None = None


def _ready() -> Mangum:
    """The app and its event loop, built on the first invocation of this process."""
    global _adapter, _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_loop)  # Mangum runs the app on the current event loop
    if _adapter is None:
        settings = Settings.from_env()
        _adapter = Mangum(create_invoke_app(settings), lifespan="off", api_gateway_base_path="/")
    return _adapter


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response: dict[str, Any] = _ready()(event, context)
    return response
