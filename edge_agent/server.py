"""The device's local inference endpoint: Open Inference Protocol v2 over HTTP (JSON and the binary
tensor extension), with the worker's codec and signature checks (`modelfleet.runtime`).

    GET  /v2/health/live | /v2/health/ready      GET /v2/models/{name} | /v2/models/{name}/ready
    POST /v2/models/{name}/infer                   GET /_agent  (what is served, revisions, phases)
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edge_agent.storage import write_json
from modelfleet.runtime.errors import ModelRuntimeError, RequestDecodeError, SignatureMismatchError
from modelfleet.runtime.oip import decode_infer_request, encode_infer_response
from modelfleet.runtime.validation import check_inputs

if TYPE_CHECKING:
    from edge_agent.agent import EdgeAgent

MAX_BODY = 16 * 1024 * 1024


def _json(doc: object, status: int = 200) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")


def _error(status: int, code: str, message: str) -> Response:
    return _json({"error": message, "code": code}, status)


def create_app(agent: EdgeAgent) -> Starlette:
    slots = agent.slots

    async def live(_: Request) -> Response:
        return _json({"live": True})

    async def ready(_: Request) -> Response:
        return _json({"ready": bool(slots.names())}, 200 if slots.names() else 503)

    async def metadata(request: Request) -> Response:
        served = slots.get(request.path_params["name"])
        if served is None:
            return _error(404, "model_not_found", f"model '{request.path_params['name']}' is not served here")
        sig = served.model.signature
        return _json(
            {
                "name": served.name,
                "versions": [served.model_id],
                "platform": "modelfleet-edge",
                "inputs": [s.model_dump(mode="json") for s in sig.inputs],
                "outputs": [s.model_dump(mode="json") for s in sig.outputs],
            }
        )

    async def model_ready(request: Request) -> Response:
        ok = slots.get(request.path_params["name"]) is not None
        return _json({"ready": ok}, 200 if ok else 404)

    async def infer(request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        if len(body) > MAX_BODY:
            return _error(413, "payload_too_large", f"the body exceeds {MAX_BODY} bytes")
        served = slots.get(name)  # the version this request runs on, whatever swaps meanwhile
        if served is None:
            return _error(404, "model_not_found", f"model '{name}' is not served here")
        header = request.headers.get("inference-header-content-length")
        try:
            req = decode_infer_request(body, int(header) if header else None)
            inputs = check_inputs(served.model.signature, req.inputs)
            outputs = await run_in_threadpool(served.model.run, inputs)
            out, json_len = encode_infer_response(
                name, served.model_id, req.id, outputs, req.outputs, req.binary_outputs_default
            )
        except (RequestDecodeError, SignatureMismatchError, ValueError) as e:
            return _error(400, "bad_request", str(e))
        except ModelRuntimeError as e:
            return _error(500, "inference_failed", str(e))
        if json_len is None:
            return Response(out, media_type="application/json")
        return Response(
            out,
            media_type="application/octet-stream",
            headers={"inference-header-content-length": str(json_len)},
        )

    async def agent_status(_: Request) -> Response:
        return _json(agent.status())

    return Starlette(
        routes=[
            Route("/v2/health/live", live),
            Route("/v2/health/ready", ready),
            Route("/v2/models/{name}", metadata),
            Route("/v2/models/{name}/ready", model_ready),
            Route("/v2/models/{name}/infer", infer, methods=["POST"]),
            Route("/_agent", agent_status),
        ]
    )


def serve(agent: EdgeAgent, host: str, port: int, run_file: Path | None = None) -> None:
    """Serve until interrupted; the bound port goes to `run_file` (port 0 picks a free one)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    if run_file is not None:
        write_json(run_file, {"port": bound, "host": host})
    config = uvicorn.Config(create_app(agent), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
