"""The gateway's ASGI app: `/api/v1/*` through the Lambda handlers (as API Gateway would call
them), `/v2/*` (Open Inference Protocol) through the data plane."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import cast

import orjson
from aws_lambda_powertools.utilities.typing import LambdaContext
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from functions.api import app as api
from functions.authorizer import context_of
from modelfleet.adapters import aws
from modelfleet.adapters.sqs import QueueConsumer
from modelfleet.config import Settings
from modelfleet.control.container import control_plane
from modelfleet.gateway.auth import Authenticator, AuthFailure
from modelfleet.gateway.body import BodyTooLarge, read_body
from modelfleet.gateway.dataplane import DataPlane, oip_error
from modelfleet.gateway.lambda_bridge import LocalLambdaContext, to_event, to_response
from modelfleet.gateway.routing_table import RoutingTables

PUBLIC_API_PATHS = frozenset({"/api/v1/openapi.json"})

log = logging.getLogger(__name__)


def native_error(status: int, code: str, message: str) -> Response:
    return Response(
        orjson.dumps({"error": {"code": code, "message": message}}),
        status_code=status,
        media_type="application/json",
    )


def create_app(settings: Settings, infer_timeout_seconds: float = 60.0) -> Starlette:
    auth = Authenticator()
    tables = RoutingTables(control_plane().repo)
    plane = DataPlane(tables, auth, settings.max_body_bytes, infer_timeout_seconds)

    async def control_api(request: Request) -> Response:
        request_id = uuid.uuid4().hex
        try:
            body = await read_body(request, settings.max_body_bytes)
        except BodyTooLarge as e:
            return native_error(413, "payload_too_large", str(e))
        authorizer = None
        if request.url.path not in PUBLIC_API_PATHS:
            try:
                authorizer = context_of(await auth.authenticate(request.headers))
            except AuthFailure as e:
                return native_error(e.status, e.code, e.message)
        event = to_event(request, body, authorizer, request_id)
        context = cast(LambdaContext, LocalLambdaContext(aws_request_id=request_id))
        try:
            result = await run_in_threadpool(api.handler, event, context)
        except Exception:  # the handler itself failed (like a Lambda error): JSON, logged
            log.exception("the API handler failed")
            return native_error(500, "internal_error", "an unexpected error occurred; it was logged")
        return to_response(result, request_id)

    async def healthz(_: Request) -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        sqs = aws.client("sqs", settings)
        url = await run_in_threadpool(
            QueueConsumer.url_for, sqs, settings.names.queue("gateway-invalidations")
        )
        tables.start_listener(QueueConsumer(sqs, url))
        try:
            yield
        finally:
            tables.stop_listener()
            await plane.close()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    routes = [
        Route("/healthz", healthz),
        Route("/api/v1/{path:path}", control_api, methods=methods),
        Route("/v2", plane.server_metadata),
        Route("/v2/health/live", plane.live),
        Route("/v2/health/ready", plane.ready),
        Route("/v2/models/{name}", plane.model_metadata),
        Route("/v2/models/{name}/versions/{version}", plane.model_metadata),
        Route("/v2/models/{name}/ready", plane.model_ready),
        Route("/v2/models/{name}/versions/{version}/ready", plane.model_ready),
        Route("/v2/models/{name}/infer", plane.infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", plane.infer, methods=["POST"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        """Starlette's own answers (unknown path, wrong method) in the face's JSON error format."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = {404: "route_not_found", 405: "method_not_allowed"}.get(status, "http_error")
        message = {404: "no such route", 405: f"{request.method} is not allowed here"}.get(status, "error")
        if request.url.path.startswith("/api/"):
            return native_error(status, code, message)
        return oip_error(status, message, code)

    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
