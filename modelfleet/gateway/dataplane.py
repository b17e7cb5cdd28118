"""The Open Inference Protocol v2 face of the gateway: health, model metadata and readiness,
and inference, forwarded to a node chosen from the in-memory routing table.

Inference is the hot path, served as a raw ASGI handler (no request object, no routing table of
Starlette's): authenticate from the verdict cache, look the deployment up in memory, read the
body once and forward it untouched to the node's data port (node_link.py), then relay the
node's status, headers and body. The body is never decoded here: the node that runs the model
checks it against the model's signature. Nodes registered without a data port get it over HTTP.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response

from modelfleet.core.lifecycle import DeploymentState
from modelfleet.gateway.auth import Authenticator, AuthFailure
from modelfleet.gateway.body import BodyTooLarge
from modelfleet.gateway.node_link import (
    NOT_SERVING_FIELD,
    NodeLinks,
    NodeTimeout,
    NodeUnavailable,
    encode_fields,
    join_fields,
)
from modelfleet.gateway.routing_table import DeploymentEntry, RoutingTables
from modelfleet.observability.metrics import InferenceMetrics
from schemas.keys import Role
from schemas.models import ModelFormat

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PLATFORMS = {ModelFormat.ONNX: "onnxruntime_onnx", ModelFormat.TORCHSCRIPT: "pytorch_libtorch"}
FORWARD_HEADERS = ("content-type", "inference-header-content-length", "x-correlation-id")
RETURN_HEADERS = ("content-type", "inference-header-content-length", "retry-after")
NOT_SERVING = (DeploymentState.STOPPING, DeploymentState.STOPPED, DeploymentState.FAILED)
_JSON_HEADERS = [(b"content-type", b"application/json")]
CORRELATION_HEADER = "x-correlation-id"  # follows a request to the node and into its logs

log = logging.getLogger(__name__)


def oip_error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": message, "code": code}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def infer_target(path: str) -> tuple[str, str | None] | None:
    """(deployment, version or None) of `/v2/models/{d}[/versions/{v}]/infer`, else None."""
    if not (path.startswith("/v2/models/") and path.endswith("/infer")):
        return None
    parts = path[11:-6].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
        return parts[0], parts[2]
    return None


class ClientGone(Exception):
    pass


async def read_asgi_body(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The whole body, refused (BodyTooLarge) as soon as it passes `limit`; one chunk is
    returned as is, never copied."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    message = await receive()
    if message["type"] != "http.request":
        raise ClientGone
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise BodyTooLarge(limit)
    if not message.get("more_body", False):
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_response(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send, status: int, message: str, code: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = orjson.dumps({"error": message, "code": code})
    await send_response(send, status, body, [*_JSON_HEADERS, *(extra or [])])


class DataPlane:
    def __init__(
        self,
        tables: RoutingTables,
        auth: Authenticator,
        max_body_bytes: int,
        timeout_seconds: float,
        links: NodeLinks | None = None,
    ):
        self._tables = tables
        self._auth = auth
        self._max_body = max_body_bytes
        self._timeout = timeout_seconds
        self._timeout_ms = str(int(timeout_seconds * 1000))
        self.links = links or NodeLinks()  # shared with other faces that forward to nodes
        self._http: httpx.AsyncClient | None = None  # nodes without a data port
        self._fields: dict[tuple[str, str], bytes] = {}
        self._id_prefix = secrets.token_hex(6)
        self._ids = itertools.count(1)
        self.metrics = InferenceMetrics()  # /metrics and the console's charts read it

    async def close(self) -> None:
        self.links.close()
        if self._http is not None:
            await self._http.aclose()

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
    async def infer_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI endpoint of Starlette's infer routes (the app's fast path usually answers first)."""
        params = scope.get("path_params", {})
        await self.infer(scope, receive, send, params["name"], params.get("version"))

    async def infer(self, scope: Scope, receive: Receive, send: Send, name: str, version: str | None) -> None:
        started = time.perf_counter()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-request-id") or f"{self._id_prefix}{next(self._ids):x}"
        correlation_id = headers.get(CORRELATION_HEADER, "")
        if not correlation_id or len(correlation_id) > 128:  # it travels in a bounded frame field
            correlation_id = headers[CORRELATION_HEADER] = request_id
        try:
            who = await self._auth.authenticate(headers)
        except AuthFailure as e:
            return await send_error(send, e.status, e.message, e.code)
        if not who.has(Role.INFER, Role.MANAGE):
            return await send_error(send, 403, "this API key lacks the infer role", "missing_role")
        entry = await self._tables.get(who.project_id, name)
        if entry is None:
            return await send_error(send, 404, f"deployment '{name}' was not found", "deployment_not_found")
        send = self.metrics.watch(send, who.project_id, name, started)  # only names that exist
        if version is not None and entry.version(version) is None:
            return await send_error(
                send, 404, f"deployment '{name}' has no version '{version}'", "version_not_found"
            )
        try:
            body = await read_asgi_body(receive, headers.get("content-length"), self._max_body)
        except BodyTooLarge as e:
            return await send_error(send, 413, str(e), "payload_too_large")
        except ClientGone:
            return None
        if entry.state in NOT_SERVING:
            detail = f": {entry.reason}" if entry.reason else ""
            return await send_error(
                send,
                409,
                f"deployment '{entry.deployment_id}' is {entry.state.value}{detail}",
                "deployment_not_serving",
            )
        retry = [(b"retry-after", b"1")]
        for _ in range(3):
            choice = entry.pick(version)
            if choice is None:
                entry = await self._tables.refresh_if_unready(entry)
                choice = entry.pick(version)
            if choice is None:
                message = (
                    f"deployment '{entry.deployment_id}' has no ready allocation yet ({entry.state.value})"
                )
                return await send_error(send, 503, message, "no_ready_allocation", retry)
            chosen, address = choice
            try:
                if address.startswith("tcp://"):
                    fields = self._infer_fields(entry.uid, chosen.version_id, headers)
                    frame = await self.links.get(address).call(fields, body, self._timeout)
                    if NOT_SERVING_FIELD in frame.fields:  # a stale route: it did not run
                        entry = await self._tables.reload((entry.project_id, entry.deployment_id)) or entry
                        continue
                    status, answer, returned = frame.status, frame.body, frame.fields
                else:
                    status, answer, returned = await self._over_http(
                        address, entry.uid, chosen.version_id, body, headers
                    )
            except NodeUnavailable:
                self.links.drop(address)
                self._tables.drop_node(address)
                continue
            except NodeTimeout:
                log.warning(
                    "inference timed out on %s",
                    address,
                    extra={"correlation_id": correlation_id, "deployment": name},
                )
                return await send_error(send, 504, "the node did not answer in time", "inference_timeout")
            out = [(k.encode(), v.encode()) for k in RETURN_HEADERS if (v := returned.get(k))]
            out.append((b"x-request-id", request_id.encode("latin-1")))
            out.append((b"x-correlation-id", correlation_id.encode("latin-1")))
            out.append((b"x-model-version", chosen.version_id.encode()))
            return await send_response(send, status, bytes(answer), out)
        return await send_error(
            send, 503, "no node of this deployment could be reached", "nodes_unreachable", retry
        )

    def _infer_fields(self, uid: str, version: str, headers: dict[str, str]) -> bytes:
        key = (uid, version)
        prefix = self._fields.get(key)
        if prefix is None:
            pairs = {"op": "infer", "uid": uid, "version": version, "timeout_ms": self._timeout_ms}
            prefix = self._fields[key] = encode_fields(pairs)
        extra = [(k, v) for k in FORWARD_HEADERS if (v := headers.get(k))]
        return join_fields(prefix, encode_fields(extra)) if extra else prefix

    async def _over_http(
        self, url: str, uid: str, version: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(self._timeout, connect=2.0))
        try:
            resp = await self._http.post(
                f"{url}/infer/{uid}/{version}",
                content=body,
                headers={k: v for k in FORWARD_HEADERS if (v := headers.get(k))},
            )
        except (httpx.ConnectError, httpx.RemoteProtocolError) as e:
            raise NodeUnavailable(str(e)) from None
        except httpx.TimeoutException as e:
            raise NodeTimeout(str(e)) from None
        return resp.status_code, resp.content, dict(resp.headers)
