"""What every API route needs: the caller (from the authorizer's context), the clock, the
control plane, and the native face's error format."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel

from modelfleet.control.container import ControlPlane, control_plane, utcnow
from modelfleet.control.errors import Forbidden, Unauthorized
from schemas.keys import Principal, Role


def principal(router: Router) -> Principal:
    """The caller, as the Lambda authorizer (or the local gateway running it) established.

    API Gateway may serve a cached authorizer verdict, so the key's expiry travels in the
    context and is checked again here: a cached verdict never outlives its key.
    """
    raw = router.current_event.raw_event.get("requestContext", {}).get("authorizer", {}).get("lambda") or {}
    if not raw.get("key_id") or not raw.get("project_id"):
        raise Unauthorized("missing or invalid API key")
    roles = frozenset(Role(r) for r in str(raw.get("roles", "")).split(",") if r)
    expires = str(raw.get("expires_at") or "")
    who = Principal(
        key_id=raw["key_id"],
        project_id=raw["project_id"],
        roles=roles,
        expires_at=datetime.fromisoformat(expires) if expires else None,
    )
    if who.expired(utcnow()):
        raise Unauthorized("this API key has expired")
    return who


def require(router: Router, *roles: Role) -> Principal:
    who = principal(router)
    if not who.has(*roles):
        wanted = " or ".join(r.value for r in roles)
        raise Forbidden(f"this API key lacks the {wanted} role", code="missing_role")
    return who


def cp() -> ControlPlane:
    return control_plane()


def now() -> datetime:
    return utcnow()


def json_response(status: int, body: BaseModel | dict[str, Any] | None) -> Response[Any]:
    """The route's answer; powertools serialises (and checks) the body against the route's model."""
    if body is None:
        return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body="")
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if details:
        err["details"] = details
    return {"error": err}
