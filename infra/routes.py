"""The HTTP API's routes: every face the local gateway serves, as API Gateway route keys.

API Gateway can't run the local gateway's Starlette app, so the cloud routes are declared here, one
line per route (or per face, with a greedy `{proxy+}`). The infra tests read the local gateway's
routes and check that each one is covered here, by the handler that serves it locally, with
the same authentication (public or not). `selected_route` mirrors API Gateway's choice among
overlapping routes, so the check sees what the cloud would do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


class Auth(StrEnum):
    NONE = "none"  # public (health, the OpenAPI document)
    # `Authorization` (Bearer / ApiKey): verdicts cached for a short time, keyed on that header.
    BEARER = "bearer"
    # Faces that take the key in one of several headers (X-Auth-Token, X-Api-Key, Authorization):
    # API Gateway can only cache on headers every request carries, so these are checked uncached.
    ANY_HEADER = "any_header"


@dataclass(frozen=True)
class CloudRoute:
    methods: tuple[str, ...]  # ("ANY",) or explicit methods
    path: str  # API Gateway syntax: `{name}`, greedy `{proxy+}` last
    handler: str  # a name in infra/handlers.py
    auth: Auth = Auth.BEARER

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f"{m} {self.path}" for m in self.methods)


ANY = ("ANY",)
GET = ("GET", "HEAD")
NODE_ROUTE_KEYS = ("POST /api/v1/nodes", "PUT /api/v1/nodes/{node_id}/sync")

ROUTES: tuple[CloudRoute, ...] = (
    # native control API
    CloudRoute(ANY, "/api/v1/{proxy+}", "api"),
    CloudRoute(GET, "/api/v1/openapi.json", "api", Auth.NONE),
    # Node registration and heartbeats, on routes of their own so the edge switch can throttle them.
    CloudRoute(("POST",), "/api/v1/nodes", "api"),
    CloudRoute(("PUT",), "/api/v1/nodes/{node_id}/sync", "api"),
    # Elasticsearch face: management through its handler, `_infer` through the invoke router
    CloudRoute(ANY, "/_ml/{proxy+}", "es_api"),
    CloudRoute(("POST",), "/_ml/trained_models/{ident}/_infer", "invoke"),
    # service deployments (issue 4): X-Auth-Token or Authorization: ApiKey
    CloudRoute(ANY, "/v1/{project_id}/{proxy+}", "services", Auth.ANY_HEADER),
    # ... except a service's inference, which is the data plane's (the invoke router, beside the workers)
    CloudRoute(("POST",), "/v1/{project_id}/services/{service_id}/infer", "invoke", Auth.ANY_HEADER),
    # pipelines (functions/pipelines_api, under /mlops): the SDK's token refresh carries its
    # refresh token in the body, and endpoint triggers an endpoint token the handler checks
    CloudRoute(ANY, "/mlops/{proxy+}", "pipelines"),
    CloudRoute(("POST",), "/mlops/api/v1/auth/refresh", "pipelines", Auth.NONE),
    CloudRoute(ANY, "/mlops/endpoints/{proxy+}", "pipelines", Auth.NONE),
    # web console: pages and static files are public, its API is not
    CloudRoute(GET, "/console", "console", Auth.NONE),
    CloudRoute(GET, "/console/{proxy+}", "console", Auth.NONE),
    CloudRoute(GET, "/console/api/{proxy+}", "console"),
    # data plane: Open Inference Protocol, and the router's own metrics
    CloudRoute(GET, "/metrics", "invoke"),
    CloudRoute(GET, "/healthz", "invoke", Auth.NONE),
    CloudRoute(GET, "/v2", "invoke", Auth.NONE),
    CloudRoute(GET, "/v2/health/live", "invoke", Auth.NONE),
    CloudRoute(GET, "/v2/health/ready", "invoke", Auth.NONE),
    CloudRoute(ANY, "/v2/{proxy+}", "invoke"),
)

_CONVERTED = re.compile(r"\{(\w+)(?::(\w+))?\}")


def from_starlette(path: str) -> str:
    """`/api/v1/{path:path}` → `/api/v1/{path+}`; `{n:int}` → `{n}`."""

    def convert(m: re.Match[str]) -> str:
        return "{" + m.group(1) + ("+" if m.group(2) == "path" else "") + "}"

    return _CONVERTED.sub(convert, path)


def _segments(path: str) -> list[str]:
    """Parameter names erased: `{}` one segment, `{+}` greedy."""
    out = []
    for seg in path.strip("/").split("/"):
        if seg.startswith("{"):
            out.append("{+}" if seg.endswith("+}") else "{}")
        else:
            out.append(seg)
    return out


def _covers(cloud: list[str], local: list[str]) -> bool:
    """Does the cloud template match every concrete path of the local one?"""
    for i, seg in enumerate(cloud):
        if seg == "{+}":
            return len(local) > i  # a greedy variable needs at least one segment
        if i >= len(local) or local[i] == "{+}":
            return False
        if seg != "{}" and seg != local[i]:
            return False  # a cloud literal matches only the same literal
    return len(cloud) == len(local)


def _specificity(path: str) -> tuple[int, int, int]:
    segs = _segments(path)
    greedy = segs[-1] == "{+}"
    return (0 if greedy else 1, sum(1 for s in segs if not s.startswith("{")), len(segs))


def selected_route(
    routes: tuple[CloudRoute, ...], method: str, starlette_path: str
) -> tuple[CloudRoute, str] | None:
    """The route (and route key) API Gateway would pick for every request matching the local
    template, or None when some of them would find no route. An explicit method beats ANY on the
    same path; among paths, one without a greedy variable beats one with, then more literals win."""
    local = _segments(from_starlette(starlette_path))
    candidates: list[tuple[tuple[int, int, int, int], CloudRoute, str]] = []
    for r in routes:
        if not _covers(_segments(r.path), local):
            continue
        for m in r.methods:
            if m in (method, "ANY"):
                candidates.append(((*_specificity(r.path), 1 if m == method else 0), r, f"{m} {r.path}"))
    if not candidates:
        return None
    _, route, key = max(candidates, key=lambda c: c[0])
    return route, key


def route_keys() -> list[str]:
    keys = [k for r in ROUTES for k in r.keys]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise ValueError(f"route keys declared twice: {sorted(duplicates)}")
    return keys
