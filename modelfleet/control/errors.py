"""Errors of the control plane. Each face turns them into its own error format.

ControlError                 .code (a stable snake_case string), .status (HTTP)
├── InvalidRequest   400
├── Unauthorized     401
├── Forbidden        403
├── NotFound         404     (also what another project's ids get)
├── Conflict         409     (optimistic lock lost, wrong state, duplicate id)
├── PayloadTooLarge  413
├── TooManyRequests  429
└── Unavailable      503     (a backend could not be reached)
"""

from __future__ import annotations

from typing import Any


class ControlError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, code: str | None = None, details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or []


class InvalidRequest(ControlError):
    status = 400
    code = "invalid_request"


class Unauthorized(ControlError):
    status = 401
    code = "unauthorized"


class Forbidden(ControlError):
    status = 403
    code = "forbidden"


class NotFound(ControlError):
    status = 404
    code = "not_found"

    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} '{ident}' was not found", code=f"{kind.replace(' ', '_')}_not_found")
        self.kind = kind
        self.ident = ident


class Conflict(ControlError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ControlError):
    status = 413
    code = "payload_too_large"


class TooManyRequests(ControlError):
    status = 429
    code = "too_many_requests"


class Unavailable(ControlError):
    status = 503
    code = "backend_unavailable"
