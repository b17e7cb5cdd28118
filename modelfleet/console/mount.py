"""The web console at `/console`: one HTML shell, plain JS modules and a vendored chart library
(uPlot, from npm, under `static/`), no build step.

The pages call the platform's own APIs from the browser (`/api/v1`, OIP `/v2`) with the API key
the user logged in with, kept in sessionStorage and sent as an `Authorization` header: no cookie
carries it, so no other site can make the browser act with it (no CSRF), and every answer is
the key's project only, as on the API. The console adds two read-only JSON routes of its own,
authenticated and project-scoped the same way: who the key is, and a deployment's live chart
data (the gateway's per-second counters plus the nodes' last heartbeat stats).

Every deployment kind (native, `_ml`, services, pipelines) is a `DeploymentRecord`, so the
deployment pages show them all; the nodes page shows edge nodes too.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from modelfleet.control.container import control_plane
from modelfleet.gateway.auth import AuthFailure
from modelfleet.gateway.faces import FaceMount, GatewayContext
from modelfleet.observability.metrics import InferenceMetrics
from schemas.keys import Principal, Role

STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=SECURITY_HEADERS
    )


def console_error(status: int, code: str, message: str) -> Response:
    return _json({"error": {"code": code, "message": message}}, status)


def node_totals(project_id: str, deployment_id: str) -> dict[str, Any] | None:
    """The deployment's counters summed over its nodes' last heartbeats; None if the project
    has no such deployment. Blocking reads: run in a thread."""
    repo = control_plane().repo
    d = repo.get_deployment(project_id, deployment_id)
    if d is None:
        return None
    totals = {"queue_depth": 0, "cache_hits": 0, "rejected": 0, "inferences": 0, "errors": 0}
    for routes in repo.node_stats().values():
        for key, s in routes.items():
            if key.partition("/")[0] != d.uid:
                continue
            totals["queue_depth"] += s.number_of_pending_requests
            totals["cache_hits"] += s.inference_cache_hit_count
            totals["rejected"] += s.rejected_execution_count
            totals["inferences"] += s.inference_count
            totals["errors"] += s.error_count
    return totals


def console_mount(ctx: GatewayContext) -> FaceMount:
    """The console as a gateway face (a `MountFactory`)."""
    metrics: InferenceMetrics = ctx.plane.metrics
    shell = (STATIC / "index.html").read_bytes()

    async def page(_: Request) -> Response:
        return Response(shell, media_type="text/html", headers=SECURITY_HEADERS)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            return console_error(404, "not_found", "no such file")
        media = STATIC_TYPES.get(path.suffix, "application/octet-stream")
        return FileResponse(
            path, media_type=media, headers={**SECURITY_HEADERS, "cache-control": "max-age=300"}
        )

    async def caller(request: Request) -> Principal | Response:
        try:
            return await ctx.auth.authenticate(request.headers)
        except AuthFailure as e:
            return console_error(e.status, e.code, e.message)

    async def whoami(request: Request) -> Response:
        who = await caller(request)
        if isinstance(who, Response):
            return who
        return _json({"project_id": who.project_id, "key_id": who.key_id, "roles": sorted(who.roles)})

    async def chart(request: Request) -> Response:
        who = await caller(request)
        if isinstance(who, Response):
            return who
        if not who.has(Role.MANAGE, Role.INFER):
            return console_error(403, "missing_role", "this API key lacks the manage or infer role")
        deployment_id = request.path_params["deployment_id"]
        nodes = await run_in_threadpool(node_totals, who.project_id, deployment_id)
        if nodes is None:
            return console_error(404, "deployment_not_found", f"deployment '{deployment_id}' was not found")
        now = time.time()
        points = [asdict(p) for p in metrics.chart(who.project_id, deployment_id, now)]
        return _json({"deployment_id": deployment_id, "at": now, "points": points, "nodes": nodes})

    routes = [
        Route("/console", page),
        Route("/console/static/{name}", static),
        Route("/console/api/whoami", whoami),
        Route("/console/api/deployments/{deployment_id}/chart", chart),
        Route("/console/{page:path}", page),
    ]
    return FaceMount(prefix="/console", routes=routes, error=console_error)
