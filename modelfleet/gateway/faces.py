"""How a face plugs into the local gateway.

Every face (native `/api/v1`, Elasticsearch `/_ml`, services `/v1/{project_id}`, pipelines, the
console) brings its routes and its own error format. In the cloud its management routes are an
API Gateway integration with a Lambda handler; locally `lambda_endpoint` plays API Gateway: it
authenticates with the same authorizer, bounds the body, builds the HTTP API v2 event and runs the
handler in a thread. Starlette's own 404/405 answers under a face's prefix use that face's format.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from aws_lambda_powertools.utilities.typing import LambdaContext
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from functions.authorizer import context_of
from modelfleet.config import Settings
from modelfleet.gateway.auth import Authenticator, AuthFailure
from modelfleet.gateway.body import BodyTooLarge, read_body
from modelfleet.gateway.dataplane import DataPlane
from modelfleet.gateway.lambda_bridge import LocalLambdaContext, to_event, to_response
from modelfleet.gateway.routing_table import RoutingTables

log = logging.getLogger(__name__)

ErrorResponse = Callable[[int, str, str], Response]  # (status, code, message) -> the face's error
LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]
Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class GatewayContext:
    """What the gateway shares with its faces."""

    settings: Settings
    auth: Authenticator
    tables: RoutingTables
    plane: DataPlane
    wake: Callable[[str, str], Awaitable[bool]]  # scale a deployment from zero; True if woken


@dataclass(frozen=True)
class FaceMount:
    prefix: str  # requests under it get `error` for the gateway's own answers
    routes: Sequence[BaseRoute]
    error: ErrorResponse
    public_paths: frozenset[str] = field(default_factory=frozenset)


class MountFactory(Protocol):
    def __call__(self, ctx: GatewayContext) -> FaceMount: ...


def lambda_endpoint(
    ctx: GatewayContext,
    handler: LambdaHandler,
    error: ErrorResponse,
    function_name: str,
    public_paths: frozenset[str] = frozenset(),
    extra_headers: dict[str, str] | None = None,
) -> Endpoint:
    """A Starlette endpoint that calls `handler` as API Gateway (with the Lambda authorizer) would.

    Paths in `public_paths` skip authentication (the handler then sees no authorizer context)."""

    async def endpoint(request: Request) -> Response:
        request_id = uuid.uuid4().hex
        authorizer = None
        if request.url.path not in public_paths:
            try:
                authorizer = context_of(await ctx.auth.authenticate(request.headers))
            except AuthFailure as e:
                return error(e.status, e.code, e.message)
        try:
            body = await read_body(request, ctx.settings.max_body_bytes)
        except BodyTooLarge as e:
            return error(413, "payload_too_large", str(e))
        event = to_event(request, body, authorizer, request_id)
        context = cast(
            LambdaContext, LocalLambdaContext(function_name=function_name, aws_request_id=request_id)
        )
        try:
            result = await run_in_threadpool(handler, event, context)
        except Exception:  # the handler itself failed (like a Lambda error): the face's JSON, logged
            log.exception("the %s handler failed", function_name)
            return error(500, "internal_error", "an unexpected error occurred; it was logged")
        response = to_response(result, request_id)
        if extra_headers:
            response.headers.update(extra_headers)
        return response

    return endpoint
