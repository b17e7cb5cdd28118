"""/api/v1/edge: registration tokens, edge nodes (their own desired state and status), edge
services and their fleet rollouts.

Operators (admin, manage) create tokens and services and watch nodes; a node, with its own key,
registers once (spending a token), long-polls its desired state (`If-None-Match` with the last
ETag; `wait` seconds at most), reports its status and rotates its key. A node's key reaches only
that node's routes: any other node id answers 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from functions.api.context import json_response, now, principal, require
from modelfleet.control.edge import EdgeControl, edge_control
from modelfleet.control.edge_nodes import etag_of
from schemas.edge import (
    EdgeNodeList,
    EdgeNodeView,
    EdgeRegister,
    EdgeRegistered,
    EdgeServiceCreate,
    EdgeServiceCreated,
    EdgeServiceList,
    EdgeServiceUpdate,
    EdgeServiceView,
    NodeKeyRotated,
    RolloutRecord,
    StatusReport,
    TokenCreate,
    TokenCreated,
)
from schemas.events import EventList
from schemas.keys import Role

router = Router()
MAX_WAIT_SECONDS = 25  # below API Gateway's 29 s integration timeout


def edge() -> EdgeControl:
    return edge_control()


# --- tokens and nodes --------------------------------------------------------------------------------


@router.post("/edge/registration-tokens")
def create_token(body: TokenCreate) -> Response[TokenCreated]:
    """A one-time registration token (admin). `token` is shown once."""
    who = require(router, Role.ADMIN)
    return json_response(201, edge().nodes.create_token(who.project_id, body, now()))


@router.post("/edge/nodes")
def register_node(body: EdgeRegister) -> Response[EdgeRegistered]:
    """Register with a registration token as the credential; the answer holds the node's own key."""
    who = principal(router)
    control = edge()
    at = now()
    return json_response(
        201, control.nodes.register(who, body, at, lambda p, n: control.initial_desired(p, n, at))
    )


@router.get("/edge/nodes")
def list_nodes() -> Response[EdgeNodeList]:
    who = require(router, Role.MANAGE)
    return json_response(200, EdgeNodeList(nodes=edge().node_views(who.project_id, now())))


@router.get("/edge/nodes/<edge_node_id>")
def get_node(edge_node_id: str) -> Response[EdgeNodeView]:
    who = principal(router)
    return json_response(200, edge().node_view(who, edge_node_id, now(), readers=(Role.MANAGE,)))


@router.delete("/edge/nodes/<edge_node_id>")
def deregister_node(edge_node_id: str) -> Response[Any]:
    """Deregister: the node's key stops working at once."""
    who = require(router, Role.MANAGE)
    edge().nodes.deregister(who.project_id, edge_node_id, now())
    return json_response(204, None)


@router.post("/edge/nodes/<edge_node_id>/key")
def rotate_node_key(edge_node_id: str) -> Response[NodeKeyRotated]:
    """The node's new key (shown once); the old one is revoked."""
    who = principal(router)
    return json_response(200, edge().nodes.rotate_key(who, edge_node_id, now()))


@router.get("/edge/nodes/<edge_node_id>/desired")
def desired_state(
    edge_node_id: str, wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = 0
) -> Response[Any]:
    """The node's desired state; its ETag is the revision. With `If-None-Match` the request is held
    up to `wait` seconds for a newer revision, else 304. A 304 with `Retry-After` was not held
    (every long-poll slot was busy): come back after that many seconds."""
    who = principal(router)
    control = edge()
    etag = router.current_event.headers.get("if-none-match")
    desired, held = control.nodes.desired(who, edge_node_id, etag, wait)
    if desired is None:
        headers = {"ETag": etag or ""}
        if not held:
            headers["Retry-After"] = "5"
        return Response(
            status_code=304, content_type=content_types.APPLICATION_JSON, body="", headers=headers
        )
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=control.desired_view(desired).model_dump_json(),
        headers={"ETag": etag_of(desired), "Cache-Control": "no-store"},
    )


@router.post("/edge/nodes/<edge_node_id>/status")
def report_status(edge_node_id: str, body: StatusReport) -> Response[Any]:
    """Heartbeat, resources and each deployment's state (starting / started / failed, reason)."""
    who = principal(router)
    edge().report(who, edge_node_id, body, now())
    return json_response(204, None)


# --- services -------------------------------------------------------------------------------------------


@router.post("/edge/services")
def create_service(body: EdgeServiceCreate) -> Response[EdgeServiceCreated]:
    who = require(router, Role.MANAGE)
    rec = edge().create_service(who.project_id, body.service_name, body.description, body.config, now())
    return json_response(201, EdgeServiceCreated(service_id=rec.service_id, resource_ids=[rec.service_id]))


@router.get("/edge/services")
def list_services() -> Response[EdgeServiceList]:
    who = require(router, Role.MANAGE)
    return json_response(200, EdgeServiceList(services=edge().service_views(who.project_id, now())))


@router.get("/edge/services/<service_id>")
def get_service(service_id: str) -> Response[EdgeServiceView]:
    who = require(router, Role.MANAGE)
    return json_response(200, edge().service_view(who.project_id, service_id, now()))


@router.put("/edge/services/<service_id>")
def update_service(service_id: str, body: EdgeServiceUpdate) -> Response[RolloutRecord]:
    """New models for the service's nodes: a rollout in waves (409 while another runs)."""
    who = require(router, Role.MANAGE)
    return json_response(
        202, edge().update_service(who.project_id, service_id, body.config, body.rollout, now())
    )


@router.delete("/edge/services/<service_id>")
def delete_service(service_id: str) -> Response[Any]:
    who = require(router, Role.MANAGE)
    edge().delete_service(who.project_id, service_id, now())
    return json_response(204, None)


@router.get("/edge/services/<service_id>/events")
def service_events(service_id: str) -> Response[EventList]:
    who = require(router, Role.MANAGE)
    return json_response(200, EventList(events=edge().history(who.project_id, service_id)))
