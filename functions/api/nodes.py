"""/api/v1/nodes: registration and sync (node role), listing (operators)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from functions.api.context import cp, json_response, now, principal, require
from schemas.keys import Role
from schemas.nodes import NodeList, NodeRegister, NodeSync, SyncResponse

router = Router()


@router.post("/nodes")
def register_node(body: NodeRegister) -> Response[SyncResponse]:
    who = principal(router)
    service = cp().nodes
    rec = service.register(who, body, now())
    return json_response(200, service.sync(who, rec.node_id, NodeSync(), now()))


@router.put("/nodes/<node_id>/sync")
def sync_node(node_id: str, body: NodeSync) -> Response[SyncResponse]:
    who = principal(router)
    return json_response(200, cp().nodes.sync(who, node_id, body, now()))


@router.get("/nodes")
def list_nodes() -> Response[NodeList]:
    require(router, Role.MANAGE)
    return json_response(200, NodeList(nodes=cp().nodes.list_nodes(now())))
