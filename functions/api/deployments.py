"""/api/v1/deployments: create, list, get, stop, start, delete, event history."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Query

from functions.api.context import cp, json_response, now, require
from functions.idempotency import once
from modelfleet.control.errors import Conflict, InvalidRequest
from modelfleet.core.lifecycle import DeploymentState
from modelfleet.core.placement import Priority
from schemas.deployments import (
    DeploymentCreate,
    DeploymentList,
    DeploymentUpdate,
    DeploymentView,
    deployment_view,
)
from schemas.events import EventList
from schemas.keys import Role

router = Router()


@router.post("/deployments")
def create_deployment(body: DeploymentCreate) -> Response[DeploymentView]:
    who = require(router, Role.MANAGE)
    service = cp().deployments

    def create() -> tuple[int, Any]:
        rec = service.create(who.project_id, body, now())
        return 201, deployment_view(*service.get(who.project_id, rec.deployment_id)).model_dump(mode="json")

    payload = body.model_dump(mode="json")
    status, answer = once(router, who.project_id, "POST /deployments", payload, create)
    return json_response(status, answer)


@router.get("/deployments")
def list_deployments() -> Response[DeploymentList]:
    who = require(router, Role.MANAGE, Role.INFER)
    views = [deployment_view(d, r) for d, r in cp().deployments.list_deployments(who.project_id)]
    return json_response(200, DeploymentList(deployments=views))


@router.get("/deployments/<deployment_id>")
def get_deployment(deployment_id: str) -> Response[DeploymentView]:
    who = require(router, Role.MANAGE, Role.INFER)
    return json_response(200, deployment_view(*cp().deployments.get(who.project_id, deployment_id)))


@router.patch("/deployments/<deployment_id>")
def update_deployment(deployment_id: str, body: DeploymentUpdate) -> Response[DeploymentView]:
    who = require(router, Role.MANAGE)
    service = cp().deployments
    rec, _ = service.get(who.project_id, deployment_id)
    if rec.priority == Priority.LOW and body.allocations != 1:
        raise InvalidRequest("a low-priority deployment has exactly 1 allocation", code="validation_failed")
    if rec.state in (DeploymentState.STOPPING, DeploymentState.STOPPED):
        raise Conflict(
            f"deployment '{deployment_id}' is {rec.state.value}; start it first", code="invalid_state"
        )
    service.update(
        who.project_id, deployment_id, now(), allocations=body.allocations, expect_version=body.version
    )
    return json_response(200, deployment_view(*service.get(who.project_id, deployment_id)))


@router.post("/deployments/<deployment_id>/stop")
def stop_deployment(deployment_id: str) -> Response[DeploymentView]:
    who = require(router, Role.MANAGE)
    service = cp().deployments
    service.stop(who.project_id, deployment_id, now())
    return json_response(200, deployment_view(*service.get(who.project_id, deployment_id)))


@router.post("/deployments/<deployment_id>/start")
def start_deployment(deployment_id: str) -> Response[DeploymentView]:
    who = require(router, Role.MANAGE)
    service = cp().deployments
    service.start(who.project_id, deployment_id, now())
    return json_response(200, deployment_view(*service.get(who.project_id, deployment_id)))


@router.delete("/deployments/<deployment_id>")
def delete_deployment(deployment_id: str, force: Annotated[bool, Query()] = False) -> Response[Any]:
    who = require(router, Role.MANAGE)
    cp().deployments.delete(who.project_id, deployment_id, now(), force=force)
    return json_response(204, None)


@router.get("/deployments/<deployment_id>/events")
def deployment_events(
    deployment_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> Response[EventList]:
    who = require(router, Role.MANAGE, Role.INFER)
    return json_response(
        200, EventList(events=cp().deployments.history(who.project_id, deployment_id, limit))
    )
