"""/api/v1/models: register, upload, commit, list, get, delete."""

from __future__ import annotations

import base64
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from functions.api.context import cp, json_response, now, require
from functions.idempotency import once
from schemas.keys import Role
from schemas.models import ModelCreate, ModelCreated, ModelList, ModelView, UploadList, model_view

router = Router()


@router.post("/models", responses={201: {"description": "registered; upload the files, then commit"}})
def create_model(body: ModelCreate) -> Response[ModelCreated]:
    who = require(router, Role.MANAGE)

    def create() -> tuple[int, Any]:
        return 201, cp().models.create(who.project_id, body, now()).model_dump(mode="json")

    status, answer = once(router, who.project_id, "POST /models", body.model_dump(mode="json"), create)
    return json_response(status, answer)


@router.get("/models")
def list_models() -> Response[ModelList]:
    who = require(router, Role.MANAGE, Role.INFER)
    return json_response(
        200, ModelList(models=[model_view(m) for m in cp().models.list_models(who.project_id)])
    )


@router.get("/models/<model_id>")
def get_model(model_id: str) -> Response[ModelView]:
    who = require(router, Role.MANAGE, Role.INFER)
    return json_response(200, model_view(cp().models.get(who.project_id, model_id)))


@router.post("/models/<model_id>/uploads")
def renew_uploads(model_id: str) -> Response[UploadList]:
    """Fresh presigned upload URLs, when the first ones expired."""
    who = require(router, Role.MANAGE)
    rec = cp().models.get(who.project_id, model_id)
    targets = cp().models.upload_targets(rec)
    return json_response(200, UploadList(uploads=targets))


@router.put("/models/<model_id>/files/<name>")
def put_file(model_id: str, name: str) -> Response[Any]:
    """Upload one file through the API (bounded by the body limit; use the presigned URL for big files)."""
    who = require(router, Role.MANAGE)
    event = router.current_event
    body = event.body or ""
    raw = base64.b64decode(body) if event.is_base64_encoded else body.encode()
    cp().models.put_artifact(who.project_id, model_id, name, raw)
    return json_response(204, None)


@router.post("/models/<model_id>/commit")
def commit_model(model_id: str) -> Response[ModelView]:
    who = require(router, Role.MANAGE)
    return json_response(200, model_view(cp().models.commit(who.project_id, model_id, now())))


@router.delete("/models/<model_id>")
def delete_model(model_id: str) -> Response[Any]:
    who = require(router, Role.MANAGE)
    cp().models.delete(who.project_id, model_id)
    return json_response(204, None)
