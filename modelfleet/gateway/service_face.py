"""The gateway's service face: `/v1/{project_id}/...` management through the service Lambda
handler (functions/service_api), and a service's inference URL,
`POST /v1/{project_id}/services/{service_id}/infer` (or `.../versions/{v}/infer`), served here
next to the nodes exactly as `/v2` inference is (the same data plane, routing table and node
links; never a database read per request). The model's response is relayed untouched; the
gateway's own errors are rewritten into the face's `{error_code, error_msg}`.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from functions.service_api import app as service_api
from modelfleet.gateway.auth import AuthFailure
from modelfleet.gateway.dataplane import Receive, Scope, Send, send_response
from modelfleet.gateway.faces import FaceMount, GatewayContext, lambda_endpoint

PREFIX = "/v1/"

# The data plane's error codes -> the face's (errors.py has the table)
OIP_CODES = {
    "deployment_not_found": "ModelArts.3501",
    "version_not_found": "ModelArts.3501",
    "deployment_not_serving": "ModelArts.3701",
    "no_ready_allocation": "ModelArts.3702",
    "nodes_unreachable": "ModelArts.3702",
    "inference_timeout": "ModelArts.3703",
    "payload_too_large": "ModelArts.0108",
    "unauthorized": "ModelArts.0104",
    "missing_role": "ModelArts.0105",
    "internal_error": "ModelArts.0500",
}
STATUS_CODES = {
    400: "ModelArts.3704",
    401: "ModelArts.0104",
    403: "ModelArts.0105",
    404: "ModelArts.0106",
    405: "ModelArts.0107",
    413: "ModelArts.0108",
    429: "ModelArts.0429",
}


def service_error(status: int, code: str, message: str) -> Response:
    face_code = (
        code
        if code.startswith("ModelArts.")
        else OIP_CODES.get(code, STATUS_CODES.get(status, "ModelArts.0500"))
    )
    return Response(
        orjson.dumps({"error_code": face_code, "error_msg": message}),
        status_code=status,
        media_type="application/json",
    )


def _translated(send: Send) -> Send:
    """Rewrite an error answer of the gateway or node (`{"error": msg, "code"?: c}`) into the
    face's format; successful answers pass through untouched."""
    start: dict[str, Any] = {}

    async def wrapped(message: Any) -> None:
        if message["type"] == "http.response.start":
            if message["status"] < 400:
                await send(message)
            else:
                start.update(message)
            return
        if not start or message["type"] != "http.response.body":
            await send(message)
            return
        status = int(start["status"])
        try:
            body = orjson.loads(message.get("body", b""))
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            code = str(body.get("code") or "")
            mapped = OIP_CODES.get(code, STATUS_CODES.get(status, "ModelArts.0500"))
            payload = orjson.dumps({"error_code": mapped, "error_msg": body["error"]})
        else:
            payload = bytes(message.get("body", b""))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        start.clear()
        await send_response(send, status, payload, headers)

    return wrapped


def service_infer_routes(ctx: GatewayContext) -> list[BaseRoute]:
    """A service's inference, the data plane's part of this face (the cloud's invoke router
    serves it too)."""

    async def infer(scope: Scope, receive: Receive, send: Send) -> None:
        params = scope.get("path_params", {})
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            who = await ctx.auth.authenticate(headers)
        except AuthFailure as e:
            await service_error(e.status, e.code, e.message)(scope, receive, send)
            return
        if who.project_id != params["project_id"]:
            message = f"service '{params['service_id']}' was not found"
            await service_error(404, "ModelArts.3501", message)(scope, receive, send)
            return
        await ctx.plane.infer(scope, receive, _translated(send), params["service_id"], params.get("version"))

    return [
        Route("/v1/{project_id}/services/{service_id}/infer", _Asgi(infer), methods=["POST"]),
        Route(
            "/v1/{project_id}/services/{service_id}/versions/{version}/infer", _Asgi(infer), methods=["POST"]
        ),
    ]


def service_face(ctx: GatewayContext) -> FaceMount:
    management = lambda_endpoint(ctx, service_api.handler, service_error, "modelfleet-services")
    routes = [
        *service_infer_routes(ctx),
        *[
            Route(path, management, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
            for path in (
                "/v1/{project_id}/services",
                "/v1/{project_id}/services/{rest:path}",
                "/v1/{project_id}/models",
                "/v1/{project_id}/models/{rest:path}",
            )
        ],
    ]
    return FaceMount(prefix=PREFIX, routes=routes, error=service_error)


class _Asgi:
    """A raw ASGI endpoint for a Starlette Route."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._handler(scope, receive, send)
