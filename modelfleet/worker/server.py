"""The node's HTTP server: `POST /infer/{uid}/{version}` with an OIP v2 body (for direct use and
tests; the gateway uses the framed data port, see data_server.py), `POST /_sync` (a nudge from
the control plane), `GET /healthz`, and `GET /_stats`: each loaded route's inference counters (the
heartbeat's snapshot, read at once) with its last model runs as `[requests, ms]` pairs, so the
batch sizes formed and their run times can be read (the benchmark does)."""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelfleet.worker.agent import NodeAgent
from modelfleet.worker.batcher import DeploymentUnloaded, Outcome, QueueFull
from modelfleet.worker.inference import NOT_LOADED, Reply, outcome_reply, prepare, refusal


def _response(reply: Reply) -> Response:
    headers = {}
    if reply.json_header_length is not None:
        headers["inference-header-content-length"] = str(reply.json_header_length)
    if reply.retry_after is not None:
        headers["retry-after"] = reply.retry_after
    return Response(reply.body, status_code=reply.status, media_type=reply.content_type, headers=headers)


def create_worker_app(agent: NodeAgent, max_tensor_elements: int) -> Starlette:
    async def infer(request: Request) -> Response:
        version = request.path_params["version"]
        loaded = agent.serving(request.path_params["uid"], version)
        if loaded is None:
            return _response(NOT_LOADED)
        body = await request.body()
        call = prepare(
            loaded, body, request.headers.get("inference-header-content-length"), max_tensor_elements
        )
        if isinstance(call, Reply):
            return _response(call)
        outcome: Outcome
        try:
            outcome = await loaded.run(call.inputs)
        except (QueueFull, DeploymentUnloaded) as e:
            return _response(refusal(e))
        except Exception as e:  # the run failed: its own reply
            outcome = e
        return _response(outcome_reply(loaded, version, call, outcome))

    async def clear_cache(request: Request) -> Response:
        """Elasticsearch's `deployment/cache/_clear`, sent by the control plane to each node."""
        cleared = 0
        for loaded in agent.loaded_of(request.path_params["uid"]):
            if loaded.text is not None:
                loaded.text.cache.clear()
                cleared += 1
        return Response(orjson.dumps({"cleared": cleared}), media_type="application/json")

    async def sync(_: Request) -> Response:
        agent.nudge()
        return Response(status_code=202)

    async def healthz(_: Request) -> Response:
        return Response(
            orjson.dumps({"node_id": agent.registration.node_id, "routes": len(agent.routes)}),
            media_type="application/json",
        )

    async def stats(_: Request) -> Response:
        routes = {
            f"{route.assignment.deployment_id}/{version}": {
                **route.loaded.stats_snapshot().model_dump(mode="json"),
                "recent_runs": route.loaded.stats.recent_runs(),
            }
            for (_uid, version), route in list(agent.routes.items())
            if route.loaded is not None
        }
        return Response(orjson.dumps({"routes": routes}), media_type="application/json")

    return Starlette(
        routes=[
            Route("/infer/{uid}/{version}", infer, methods=["POST"]),
            Route("/_sync", sync, methods=["POST"]),
            Route("/_cache/{uid}/_clear", clear_cache, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/_stats", stats),
        ]
    )
