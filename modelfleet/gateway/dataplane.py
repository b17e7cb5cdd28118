"""The Open Inference Protocol v2 face of the gateway: health, model metadata and readiness,
and inference, forwarded to a node chosen from the in-memory routing table.

The body is forwarded as received (JSON or the binary tensor extension), never decoded here:
the node that runs the model checks it against the model's signature.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelfleet.core.lifecycle import DeploymentState
from modelfleet.gateway.auth import Authenticator, AuthFailure
from modelfleet.gateway.body import BodyTooLarge, read_body
from modelfleet.gateway.routing_table import DeploymentEntry, RoutingTables
from schemas.keys import Role
from schemas.models import ModelFormat

PLATFORMS = {ModelFormat.ONNX: "onnxruntime_onnx", ModelFormat.TORCHSCRIPT: "pytorch_libtorch"}
FORWARD_HEADERS = ("content-type", "inference-header-content-length")
RETURN_HEADERS = ("content-type", "inference-header-content-length", "retry-after")


def oip_error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": message, "code": code}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


class DataPlane:
    def __init__(
        self, tables: RoutingTables, auth: Authenticator, max_body_bytes: int, timeout_seconds: float
    ):
        self._tables = tables
        self._auth = auth
        self._max_body = max_body_bytes
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds, connect=2.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=60),
        )

    async def close(self) -> None:
        await self._client.aclose()

    # --- health and metadata --------------------------------------------------------------------
    async def live(self, _: Request) -> Response:
        return Response(orjson.dumps({"live": True}), media_type="application/json")

    async def ready(self, _: Request) -> Response:
        return Response(orjson.dumps({"ready": True}), media_type="application/json")

    async def server_metadata(self, _: Request) -> Response:
        body = {"name": "modelfleet", "version": "0.1.0", "extensions": ["binary_tensor_data"]}
        return Response(orjson.dumps(body), media_type="application/json")

    async def _entry(self, request: Request) -> DeploymentEntry | Response:
        try:
            who = await self._auth.authenticate(request.headers)
        except AuthFailure as e:
            return oip_error(e.status, e.message, e.code)
        if not who.has(Role.INFER, Role.MANAGE):
            return oip_error(403, "this API key lacks the infer role", "missing_role")
        name = request.path_params["name"]
        entry = await self._tables.get(who.project_id, name)
        if entry is None:
            return oip_error(404, f"deployment '{name}' was not found", "deployment_not_found")
        version = request.path_params.get("version")
        if version is not None and entry.version(version) is None:
            return oip_error(404, f"deployment '{name}' has no version '{version}'", "version_not_found")
        return entry

    async def model_metadata(self, request: Request) -> Response:
        entry = await self._entry(request)
        if isinstance(entry, Response):
            return entry
        version = request.path_params.get("version")
        chosen = entry.version(version) if version else entry.versions[0]
        assert chosen is not None
        sig = chosen.signature
        body: dict[str, Any] = {
            "name": entry.deployment_id,
            "versions": [v.version_id for v in entry.versions],
            "platform": PLATFORMS.get(chosen.format, "unknown") if chosen.format else "unknown",
            "inputs": [t.model_dump(mode="json") for t in sig.inputs] if sig else [],
            "outputs": [t.model_dump(mode="json") for t in sig.outputs] if sig else [],
            "state": entry.state.value,
        }
        return Response(orjson.dumps(body), media_type="application/json")

    async def model_ready(self, request: Request) -> Response:
        entry = await self._entry(request)
        if isinstance(entry, Response):
            return entry
        version = request.path_params.get("version")

        def ready_in(e: DeploymentEntry) -> bool:
            chosen = e.version(version) if version else None
            return bool(chosen.ready) if chosen else e.has_ready()

        ready = ready_in(entry)
        if not ready:
            ready = ready_in(await self._tables.refresh_if_unready(entry))
        body = {"name": entry.deployment_id, "ready": ready}
        return Response(orjson.dumps(body), status_code=200 if ready else 503, media_type="application/json")

    # --- inference --------------------------------------------------------------------------------
    async def infer(self, request: Request) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        entry = await self._entry(request)
        if isinstance(entry, Response):
            return entry
        try:
            body = await read_body(request, self._max_body)
        except BodyTooLarge as e:
            return oip_error(413, str(e), "payload_too_large")
        if entry.state in (DeploymentState.STOPPING, DeploymentState.STOPPED, DeploymentState.FAILED):
            detail = f": {entry.reason}" if entry.reason else ""
            return oip_error(
                409,
                f"deployment '{entry.deployment_id}' is {entry.state.value}{detail}",
                "deployment_not_serving",
            )
        headers = {k: v for k in FORWARD_HEADERS if (v := request.headers.get(k))}
        headers["x-request-id"] = request_id
        version = request.path_params.get("version")
        for _ in range(3):
            choice = entry.pick(version)
            if choice is None:
                entry = await self._tables.refresh_if_unready(entry)
                choice = entry.pick(version)
            if choice is None:
                return oip_error(
                    503,
                    f"deployment '{entry.deployment_id}' has no ready allocation yet ({entry.state.value})",
                    "no_ready_allocation",
                    {"retry-after": "1"},
                )
            chosen, url = choice
            try:
                resp = await self._client.post(
                    f"{url}/infer/{entry.uid}/{chosen.version_id}", content=body, headers=headers
                )
            except (httpx.ConnectError, httpx.RemoteProtocolError):
                self._tables.drop_node(url)
                continue
            except httpx.TimeoutException:
                return oip_error(504, "the node did not answer in time", "inference_timeout")
            out = {k: v for k in RETURN_HEADERS if (v := resp.headers.get(k))}
            out["x-request-id"] = request_id
            out["x-model-version"] = chosen.version_id
            return Response(resp.content, status_code=resp.status_code, headers=out)
        return oip_error(
            503, "no node of this deployment could be reached", "nodes_unreachable", {"retry-after": "1"}
        )
