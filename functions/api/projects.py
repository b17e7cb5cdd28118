"""/api/v1/projects: the tenancy boundary. The platform admin (an admin key of `_system`)
creates and deletes projects; any other key sees only its own project."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from functions.api.context import cp, json_response, now, principal, require
from functions.idempotency import once
from modelfleet.control.projects import ProjectService
from schemas.keys import Role
from schemas.projects import ProjectCreate, ProjectCreated, ProjectList, ProjectView

router = Router()


def _projects() -> ProjectService:
    plane = cp()
    return ProjectService(plane.repo, plane.keys)


@router.post("/projects")
def create_project(body: ProjectCreate) -> Response[ProjectCreated]:
    """Platform admin only. The answer holds the project's first admin key, shown once."""
    who = principal(router)

    def create() -> tuple[int, Any]:
        return 201, _projects().create(who, body, now()).model_dump(mode="json")

    payload = body.model_dump(mode="json")
    status, answer = once(
        router, who.project_id, "POST /projects", payload, create, secrets=[("admin_key", "api_key")]
    )
    return json_response(status, answer)


@router.get("/projects")
def list_projects() -> Response[ProjectList]:
    """Every project for the platform admin; the caller's own project for any other key."""
    who = require(router, Role.MANAGE, Role.INFER)
    return json_response(200, ProjectList(projects=_projects().list_projects(who)))


@router.get("/projects/<project_id>")
def get_project(project_id: str) -> Response[ProjectView]:
    who = require(router, Role.MANAGE, Role.INFER)
    return json_response(200, _projects().get(who, project_id))


@router.delete("/projects/<project_id>")
def delete_project(project_id: str) -> Response[Any]:
    """Platform admin only; refused (409) while the project has models or deployments. Its
    keys are revoked."""
    who = principal(router)
    _projects().delete(who, project_id, now())
    return json_response(204, None)
