"""The gateway's ASGI app: `/api/v1/*` and `/_ml/*` through the Lambda handlers (as API Gateway
would call them), `/v2/*` (Open Inference Protocol) and `/_ml/.../_infer` through the data plane.

OIP inference (`POST /v2/models/{d}[/versions/{v}]/infer`) is answered ahead of Starlette's
routing: it is the hot path, and a raw ASGI handler skips the request object, route matching
and middleware stack. Everything else, including the 405 of a GET to an infer path, is
Starlette's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from functions.api import app as api
from modelfleet.adapters import aws
from modelfleet.adapters.sqs import QueueConsumer
from modelfleet.config import Settings
from modelfleet.console.mount import console_mount
from modelfleet.control.container import control_plane, utcnow
from modelfleet.gateway.auth import Authenticator
from modelfleet.gateway.dataplane import (
    DataPlane,
    Receive,
    Scope,
    Send,
    infer_target,
    oip_error,
    send_error,
)
from modelfleet.gateway.es_face import EsControl, EsInfer, es_error
from modelfleet.gateway.faces import FaceMount, GatewayContext, MountFactory, lambda_endpoint
from modelfleet.gateway.pipeline_face import pipeline_mount
from modelfleet.gateway.routing_table import RoutingTables
from modelfleet.gateway.service_face import PREFIX as SERVICE_PREFIX
from modelfleet.gateway.service_face import service_error, service_face, service_infer_routes
from modelfleet.observability.exposition import metrics_mount

PUBLIC_API_PATHS = frozenset({"/api/v1/openapi.json"})

# The faces beyond the native and Elasticsearch ones: each a `MountFactory` (faces.py).
FACES: list[MountFactory] = [
    console_mount,  # /console (modelfleet/console)
    metrics_mount,  # /metrics (modelfleet/observability)
    pipeline_mount,  # /mlops (the craft-ai-sdk client's pipelines: modelfleet/faces/pipelines)
    service_face,  # /v1/{project_id}/services and /models (modelfleet/faces/service)
]

log = logging.getLogger(__name__)


def native_error(status: int, code: str, message: str) -> Response:
    return Response(
        orjson.dumps({"error": {"code": code, "message": message}}),
        status_code=status,
        media_type="application/json",
    )


class Gateway:
    """Starlette, with OIP inference answered before it."""

    def __init__(self, app: Starlette, plane: DataPlane) -> None:
        self.app = app
        self._plane = plane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            target = infer_target(scope["path"])
            if target is not None:
                try:
                    await self._plane.infer(scope, receive, send, *target)
                except Exception:  # a gateway bug: JSON and logged, like every other error
                    log.exception("inference failed in the gateway")
                    with contextlib.suppress(Exception):  # unless the answer had begun
                        await send_error(
                            send, 500, "an unexpected error occurred; it was logged", "internal_error"
                        )
                return
        await self.app(scope, receive, send)


def _wake(project_id: str, deployment_id: str) -> Awaitable[bool]:
    """Scale a deployment from zero (adaptive allocations) for a request that found no route."""

    def run() -> bool:
        cp = control_plane()
        d = cp.repo.get_deployment(project_id, deployment_id)
        return d is not None and cp.autoscaler.wake(d, utcnow())

    return run_in_threadpool(run)


def _data_plane_routes(plane: DataPlane, es_infer: EsInfer) -> list[BaseRoute]:
    """Inference and its metadata: what the local gateway and the cloud's invoke router both serve."""
    return [
        Route("/_ml/trained_models/{ident}/_infer", es_infer.handle, methods=["POST"]),
        Route("/v2", plane.server_metadata),
        Route("/v2/health/live", plane.live),
        Route("/v2/health/ready", plane.ready),
        Route("/v2/models/{name}", plane.model_metadata),
        Route("/v2/models/{name}/versions/{version}", plane.model_metadata),
        Route("/v2/models/{name}/ready", plane.model_ready),
        Route("/v2/models/{name}/versions/{version}/ready", plane.model_ready),
        Route("/v2/models/{name}/infer", _AsgiEndpoint(plane.infer_route), methods=["POST"]),
        Route(
            "/v2/models/{name}/versions/{version}/infer", _AsgiEndpoint(plane.infer_route), methods=["POST"]
        ),
    ]


async def _healthz(_: Request) -> Response:
    return Response(b'{"ok":true}', media_type="application/json")


def _error_handler(mounts: list[FaceMount]) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def http_error(request: Request, exc: Exception) -> Response:
        """Starlette's own answers (unknown path, wrong method) in the face's JSON error format."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = {404: "route_not_found", 405: "method_not_allowed"}.get(status, "http_error")
        message = {404: "no such route", 405: f"{request.method} is not allowed here"}.get(status, "error")
        if request.url.path.startswith("/api/"):
            return native_error(status, code, message)
        for m in mounts:
            if request.url.path.startswith(m.prefix):
                return m.error(status, code, message)
        if request.url.path.startswith("/_ml/"):
            return es_error(status, "illegal_argument_exception" if status < 500 else "exception", message)
        return oip_error(status, message, code)

    return http_error


def create_app(settings: Settings, infer_timeout_seconds: float = 60.0) -> Gateway:
    auth = Authenticator()
    tables = RoutingTables(control_plane().repo)
    plane = DataPlane(tables, auth, settings.max_body_bytes, infer_timeout_seconds)
    ctx = GatewayContext(settings, auth, tables, plane, _wake)
    es_control = EsControl(auth, settings.max_body_bytes)
    es_infer = EsInfer(tables, auth, plane.links, settings.max_body_bytes, _wake)
    control_api = lambda_endpoint(ctx, api.handler, native_error, "modelfleet-api", PUBLIC_API_PATHS)

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
    routes: list[BaseRoute] = [
        Route("/healthz", _healthz),
        Route("/api/v1/{path:path}", control_api, methods=methods),
        *_data_plane_routes(plane, es_infer),
        Route("/_ml/{path:path}", es_control.handle, methods=[*methods, "HEAD"]),
    ]

    # Each further face brings its routes and error format (modelfleet/gateway/faces.py).
    mounts: list[FaceMount] = [factory(ctx) for factory in FACES]
    for m in mounts:
        routes.extend(m.routes)
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _error_handler(mounts)}
    )
    return Gateway(app, plane)


def create_invoke_app(
    settings: Settings, infer_timeout_seconds: float = 25.0, table_max_age_seconds: float = 5.0
) -> Gateway:
    """The cloud's invoke router (functions/invoke.py): the data plane alone, next to the workers
    (OIP, `_infer`, a service's inference), plus `/metrics`. It has no invalidation feed (a Lambda
    is frozen between invocations), so its routing tables are re-read after
    `table_max_age_seconds`, and at once when a node fails."""
    auth = Authenticator()
    tables = RoutingTables(control_plane().repo, max_age_seconds=table_max_age_seconds)
    plane = DataPlane(tables, auth, settings.max_body_bytes, infer_timeout_seconds)
    ctx = GatewayContext(settings, auth, tables, plane, _wake)
    es_infer = EsInfer(tables, auth, plane.links, settings.max_body_bytes, _wake)
    metrics = metrics_mount(ctx)
    services = FaceMount(prefix=SERVICE_PREFIX, routes=service_infer_routes(ctx), error=service_error)
    routes = [
        Route("/healthz", _healthz),
        *_data_plane_routes(plane, es_infer),
        *services.routes,
        *metrics.routes,
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _error_handler([metrics, services])})
    return Gateway(app, plane)


class _AsgiEndpoint:
    """A raw ASGI endpoint for a Starlette Route (which would wrap a plain method as a
    request/response handler)."""

    def __init__(self, handler: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handler(scope, receive, send)
