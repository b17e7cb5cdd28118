"""The node's inference server: `POST /infer/{uid}/{version}` with an OIP v2 body, plus
`POST /_sync` (a nudge from the control plane) and `GET /healthz`."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelfleet.runtime.errors import RequestDecodeError, SignatureMismatchError
from modelfleet.runtime.oip import decode_infer_request, encode_infer_response
from modelfleet.runtime.validation import check_inputs
from modelfleet.worker.agent import NodeAgent
from modelfleet.worker.loaded import QueueFull


def _error(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"error": message, "code": code}
    if details:
        body["details"] = details
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def create_worker_app(agent: NodeAgent, max_tensor_elements: int) -> Starlette:
    async def infer(request: Request) -> Response:
        uid = request.path_params["uid"]
        version = request.path_params["version"]
        loaded = agent.serving(uid, version)
        if loaded is None:
            return _error(
                503,
                "not_loaded",
                "this node does not serve that deployment (yet)",
                headers={"retry-after": "1"},
            )
        body = await request.body()
        header = request.headers.get("inference-header-content-length")
        try:
            header_len = int(header) if header is not None else None
            req = decode_infer_request(body, header_len, max_elements=max_tensor_elements)
            inputs = check_inputs(loaded.signature, req.inputs)
        except ValueError:
            return _error(400, "invalid_request", "Inference-Header-Content-Length must be an integer")
        except SignatureMismatchError as e:
            return _error(400, "signature_mismatch", str(e), e.details)
        except RequestDecodeError as e:
            return _error(400, "invalid_request", str(e))
        try:
            outputs = await loaded.run(inputs)
        except QueueFull as e:
            return _error(429, "queue_full", str(e), headers={"retry-after": "1"})
        except Exception as e:  # the runtime refused the input (e.g. a value the graph rejects)
            text = str(e)
            status = 400 if "INVALID_ARGUMENT" in text or "Invalid" in text else 500
            return _error(status, "inference_failed", text[:2000])
        try:
            payload, json_len = encode_infer_response(
                loaded.assignment.deployment_id,
                version,
                req.id,
                outputs,
                req.outputs,
                req.binary_outputs_default,
            )
        except RequestDecodeError as e:
            return _error(400, "invalid_request", str(e))
        headers = {"inference-header-content-length": str(json_len)} if json_len is not None else None
        media = "application/octet-stream" if json_len is not None else "application/json"
        return Response(payload, media_type=media, headers=headers)

    async def sync(_: Request) -> Response:
        agent.nudge()
        return Response(status_code=202)

    async def healthz(_: Request) -> Response:
        return Response(
            orjson.dumps({"node_id": agent.registration.node_id, "routes": len(agent.routes)}),
            media_type="application/json",
        )

    return Starlette(
        routes=[
            Route("/infer/{uid}/{version}", infer, methods=["POST"]),
            Route("/_sync", sync, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    )
