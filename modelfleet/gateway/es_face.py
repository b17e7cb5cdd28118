"""The gateway's Elasticsearch face: `/_ml/...` management through the `_ml` Lambda handler (as
API Gateway would call it), and `_infer` served here, next to the nodes, like `/v2` inference.

Every answer carries `X-Elastic-Product: Elasticsearch` and errors use Elasticsearch's envelope,
including the ones the gateway itself gives (authentication, body size, unknown routes).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import cast

import orjson
from aws_lambda_powertools.utilities.typing import LambdaContext
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from functions.authorizer import context_of
from functions.es_api import app as es_api
from modelfleet.core import ml_params
from modelfleet.core.lifecycle import WAITING_FOR_PLACEMENT, DeploymentState
from modelfleet.faces.elastic.errors import error_body
from modelfleet.gateway.auth import Authenticator, AuthFailure
from modelfleet.gateway.body import BodyTooLarge, read_body
from modelfleet.gateway.lambda_bridge import LocalLambdaContext, to_event, to_response
from modelfleet.gateway.node_link import (
    NOT_SERVING_FIELD,
    NodeLinks,
    NodeTimeout,
    NodeUnavailable,
    encode_fields,
)
from modelfleet.gateway.routing_table import DeploymentEntry, RoutingTables
from schemas.keys import Role

log = logging.getLogger(__name__)
PRODUCT = {"x-elastic-product": "Elasticsearch"}
AUTH_TYPES = {401: "security_exception", 403: "security_exception"}
MODEL_LOOKUP_TTL = 5.0  # seconds a model id -> deployment id answer is reused
MODEL_LOOKUP_ENTRIES = 4096
WAKE_POLL_SECONDS = 0.05


def es_error(status: int, type_: str, reason: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(error_body(status, type_, reason)),
        status_code=status,
        media_type="application/json",
        headers={**PRODUCT, **(headers or {})},
    )


def es_json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=PRODUCT)


class EsControl:
    """`/_ml/*` except `_infer`: authenticate, then run the Lambda handler in a thread."""

    def __init__(self, auth: Authenticator, max_body_bytes: int) -> None:
        self._auth = auth
        self._max_body = max_body_bytes

    async def handle(self, request: Request) -> Response:
        request_id = uuid.uuid4().hex
        try:
            who = await self._auth.authenticate(request.headers)
        except AuthFailure as e:
            return es_error(
                e.status,
                AUTH_TYPES.get(e.status, "security_exception"),
                e.message,
                {"www-authenticate": "ApiKey"},
            )
        try:
            body = await read_body(request, self._max_body)
        except BodyTooLarge as e:
            return es_error(413, "content_too_long_exception", str(e))
        event = to_event(request, body, context_of(who), request_id)
        context = cast(
            LambdaContext, LocalLambdaContext(function_name="modelfleet-es", aws_request_id=request_id)
        )
        try:
            result = await run_in_threadpool(es_api.handler, event, context)
        except Exception:  # the handler itself failed (like a Lambda error)
            log.exception("the _ml handler failed")
            return es_error(500, "exception", "an unexpected error occurred; it was logged")
        response = to_response(result, request_id)
        response.headers.update(PRODUCT)
        return response


class EsInfer:
    """`POST /_ml/trained_models/{model_or_deployment_id}/_infer`, served next to the nodes.

    The id is a deployment id, else the model of one deployment. The body goes to one `started`
    route, chosen by its allocations, as the node's `es_infer` op; a deployment scaled to zero by
    adaptive allocations is woken and the request waits (within its timeout) instead of failing.
    """

    def __init__(
        self,
        tables: RoutingTables,
        auth: Authenticator,
        links: NodeLinks,
        max_body_bytes: int,
        wake: Callable[[str, str], Awaitable[bool]],
    ) -> None:
        self._tables = tables
        self._auth = auth
        self._links = links
        self._max_body = max_body_bytes
        self._wake = wake
        self._by_model: dict[tuple[str, str], tuple[str, float]] = {}

    async def _resolve(self, project_id: str, ident: str) -> DeploymentEntry | None:
        entry = await self._tables.get(project_id, ident)
        if entry is not None:
            return entry
        cached = self._by_model.get((project_id, ident))
        if cached is not None and time.monotonic() - cached[1] < MODEL_LOOKUP_TTL:
            return await self._tables.get(project_id, cached[0])
        deployment_id = await run_in_threadpool(self._tables.deployment_of_model, project_id, ident)
        if deployment_id is None:
            return None
        if len(self._by_model) >= MODEL_LOOKUP_ENTRIES:  # bounded: ids come from callers
            self._by_model.clear()
        self._by_model[(project_id, ident)] = (deployment_id, time.monotonic())
        return await self._tables.get(project_id, deployment_id)

    async def handle(self, request: Request) -> Response:
        try:
            who = await self._auth.authenticate(request.headers)
        except AuthFailure as e:
            return es_error(e.status, "security_exception", e.message, {"www-authenticate": "ApiKey"})
        if not who.has(Role.INFER, Role.MANAGE):
            return es_error(403, "security_exception", "this API key lacks the infer role")
        ident = request.path_params["ident"]
        try:
            timeout = ml_params.parse_time_seconds(request.query_params.get("timeout") or "10s", "timeout")
        except ml_params.ParamError as e:
            return es_error(400, e.error_type, str(e))
        try:
            body = await read_body(request, self._max_body)
        except BodyTooLarge as e:
            return es_error(413, "content_too_long_exception", str(e))
        entry = await self._resolve(who.project_id, ident)
        if entry is None:
            return es_error(404, "resource_not_found_exception", f"Could not find trained model [{ident}]")
        if entry.state in (DeploymentState.STOPPING, DeploymentState.STOPPED, DeploymentState.FAILED):
            return es_error(
                409,
                "status_exception",
                f"Trained model deployment [{entry.deployment_id}] is not in a usable state: "
                f"{entry.state.value}",
            )
        deadline = time.monotonic() + timeout
        woken = False
        for _ in range(3):
            choice = entry.pick()
            while choice is None:
                entry = await self._tables.refresh_if_unready(entry)
                choice = entry.pick()
                if choice is not None:
                    break
                if entry.state == DeploymentState.PENDING and entry.reason != WAITING_FOR_PLACEMENT:
                    return es_error(  # the planner found no room: ES answers at once, it does not wait
                        409,
                        "status_exception",
                        f"Trained model deployment [{entry.deployment_id}] is not allocated to any nodes"
                        f" ({entry.reason})",
                    )
                if not woken:  # scaled to zero: start an allocation; starting: wait for it
                    woken = entry.state in (DeploymentState.PENDING, DeploymentState.STARTING)
                    woken = woken or await self._wake(who.project_id, entry.deployment_id)
                if not woken:
                    return es_error(
                        409,
                        "status_exception",
                        f"Trained model deployment [{entry.deployment_id}] is not allocated to any nodes",
                    )
                if time.monotonic() >= deadline:
                    return es_error(
                        408,
                        "elasticsearch_status_exception",
                        f"timeout [{timeout:g}s] waiting for deployment [{entry.deployment_id}] "
                        "to start an allocation",
                    )
                await asyncio.sleep(WAKE_POLL_SECONDS)
            chosen, address = choice
            if not address.startswith("tcp://"):
                return es_error(
                    503, "status_exception", "the chosen node has no data port", {"retry-after": "1"}
                )
            remaining = max(0.001, deadline - time.monotonic())
            fields = encode_fields(
                {
                    "op": "es_infer",
                    "uid": entry.uid,
                    "version": chosen.version_id,
                    "timeout_ms": str(int(remaining * 1000)),
                }
            )
            try:
                frame = await self._links.get(address).call(fields, body, remaining + 1.0)
            except NodeUnavailable:
                self._links.drop(address)
                self._tables.drop_node(address)
                continue
            except NodeTimeout:
                return es_error(
                    408,
                    "elasticsearch_status_exception",
                    f"timeout [{timeout:g}s] waiting for inference result",
                )
            if NOT_SERVING_FIELD in frame.fields:  # a stale route: it did not run; re-read, pick again
                entry = await self._tables.reload((entry.project_id, entry.deployment_id)) or entry
                continue
            headers = {k: v for k in ("retry-after",) if (v := frame.fields.get(k))}
            return Response(
                bytes(frame.body),
                status_code=frame.status,
                media_type="application/json",
                headers={**PRODUCT, **headers},
            )
        return es_error(
            503, "status_exception", "no node of this deployment could be reached", {"retry-after": "1"}
        )
