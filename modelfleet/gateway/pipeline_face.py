"""The gateway's pipeline face: `/mlops/*` (the `craft-ai-sdk` client's environment and control
URL) through the pipeline Lambda handler, as API Gateway with a JWT authorizer would call it.

Authentication differs from the other faces: `/mlops/api/v1/auth/refresh` is public (it takes the
API key in its body and answers an access token); `/mlops/endpoints/...` carries an endpoint token
the handler checks; everything else carries `Authorization: Bearer <access token>`, verified here
without a store read. Handlers run on a pool of their own: long-polls hold a thread for seconds
and must not starve the other faces.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import orjson
from aws_lambda_powertools.utilities.typing import LambdaContext
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from functions.authorizer import context_of
from functions.pipelines_api import app as pipelines_api
from modelfleet.control.container import utcnow
from modelfleet.control.errors import Unauthorized
from modelfleet.faces.pipelines import tokens
from modelfleet.faces.pipelines.errors import error_body
from modelfleet.faces.pipelines.service import pipeline_face
from modelfleet.gateway.body import BodyTooLarge, read_body
from modelfleet.gateway.faces import FaceMount, GatewayContext
from modelfleet.gateway.lambda_bridge import LocalLambdaContext, to_event, to_response

log = logging.getLogger(__name__)
PREFIX = pipelines_api.PREFIX
PUBLIC = (f"{PREFIX}/api/v1/auth/refresh", f"{PREFIX}/endpoints/")
HANDLER_THREADS = 48


def pipeline_error(status: int, code: str, message: str) -> Response:
    return Response(
        orjson.dumps(error_body(message, code)), status_code=status, media_type="application/json"
    )


def pipeline_mount(ctx: GatewayContext) -> FaceMount:
    pool = ThreadPoolExecutor(max_workers=HANDLER_THREADS, thread_name_prefix="pipelines-api")
    face = pipeline_face()  # the engine starts with the gateway, not on the first request

    def recover() -> None:
        try:
            face.recover()
        except Exception:  # the platform serves on; the next restart tries again
            log.exception("pipeline recovery at start-up failed")

    threading.Thread(target=recover, name="pipelines-recover", daemon=True).start()

    async def endpoint(request: Request) -> Response:
        request_id = uuid.uuid4().hex
        path = request.url.path
        authorizer = None
        if not any(path == p or (p.endswith("/") and path.startswith(p)) for p in PUBLIC):
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token:
                return pipeline_error(401, "Unauthorized", "missing access token (Authorization: Bearer)")
            try:
                secret = await run_in_threadpool(face.jwt_secret)
                authorizer = context_of(tokens.verify(token.strip(), secret, utcnow()))
            except Unauthorized as e:
                return pipeline_error(401, "Unauthorized", e.message)
        try:
            body = await read_body(request, ctx.settings.max_body_bytes)
        except BodyTooLarge as e:
            return pipeline_error(413, "PayloadTooLarge", str(e))
        event = to_event(request, body, authorizer, request_id)
        context = cast(
            LambdaContext, LocalLambdaContext(function_name="modelfleet-pipelines", aws_request_id=request_id)
        )
        try:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(pool, pipelines_api.handler, event, context)
        except Exception:
            log.exception("the pipelines handler failed")
            return pipeline_error(500, "InternalError", "an unexpected error occurred; it was logged")
        return to_response(result, request_id)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return FaceMount(
        prefix=PREFIX,
        routes=[Route(f"{PREFIX}/{{path:path}}", endpoint, methods=methods)],
        error=pipeline_error,
        public_paths=frozenset(PUBLIC),
    )
