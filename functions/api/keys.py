"""/api/v1/keys: API keys of the caller's project (admin role)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from functions.api.context import cp, json_response, now, require
from functions.idempotency import once
from schemas.keys import KeyCreate, KeyCreated, KeyList, KeyView, Role

router = Router()


@router.post("/keys")
def create_key(body: KeyCreate) -> Response[KeyCreated]:
    """A key of the caller's project. `api_key` (id:secret) is shown once; only its hash is kept."""
    who = require(router, Role.ADMIN)

    def create() -> tuple[int, Any]:
        return 201, cp().keys.create(who.project_id, body, now()).model_dump(mode="json")

    payload = body.model_dump(mode="json")
    status, answer = once(router, who.project_id, "POST /keys", payload, create, secrets=[("api_key",)])
    return json_response(status, answer)


@router.get("/keys")
def list_keys() -> Response[KeyList]:
    """The project's keys with their state (active, expired, revoked) and expiry; never secrets."""
    who = require(router, Role.ADMIN)
    return json_response(200, KeyList(keys=cp().keys.list_keys(who.project_id, now())))


@router.delete("/keys/<key_id>")
def revoke_key(key_id: str) -> Response[KeyView]:
    who = require(router, Role.ADMIN)
    return json_response(200, cp().keys.revoke(who.project_id, key_id, now()))
