"""API Gateway HTTP API Lambda authorizer (simple responses).

It turns whichever credential header a face uses into a principal and hands it to the
handlers as `requestContext.authorizer.lambda` = {key_id, project_id, roles, expires_at}.
Unknown, revoked and expired keys are refused (401). The handlers check the project of every
object against `project_id` and refuse an expired `expires_at` again (API Gateway caches verdicts).
"""

from __future__ import annotations

from typing import Any

from modelfleet.control.container import control_plane, utcnow
from modelfleet.control.errors import Unauthorized
from modelfleet.control.keys import credential_from_headers
from schemas.keys import Principal


def authorize(headers: dict[str, str]) -> Principal:
    """Raises Unauthorized; headers must be lower-case (API Gateway v2 events are)."""
    return control_plane().keys.verify(credential_from_headers(headers), utcnow())


def context_of(p: Principal) -> dict[str, str]:
    """The verdict as the handlers read it. `expires_at` (ISO 8601, or empty) lets them refuse
    an expired key even when API Gateway answers from its authorizer cache."""
    return {
        "key_id": p.key_id,
        "project_id": p.project_id,
        "roles": ",".join(sorted(r.value for r in p.roles)),
        "expires_at": p.expires_at.isoformat() if p.expires_at else "",
    }


def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    try:
        p = authorize(headers)
    except Unauthorized:
        return {"isAuthorized": False}
    return {"isAuthorized": True, "context": context_of(p)}
