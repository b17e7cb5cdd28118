"""The SDK's exception tree: one class per kind of failure a caller handles differently.

    ModelfleetError
    ├── ApiError (status, code, message, details)  an error answer of the platform
    │   ├── BadRequest (400)      ├── Conflict (409)
    │   ├── Unauthorized (401)    ├── PayloadTooLarge (413)
    │   ├── Forbidden (403)       ├── TooManyRequests (429, retry_after)
    │   ├── NotFound (404)        ├── ServerError (5xx)
    │   └── Unavailable (503)     (a ServerError too)
    ├── ConnectionFailed          the endpoint could not be reached
    └── WaiterError               a waiter ended without the wanted state
        ├── WaitTimeout           (also a TimeoutError) the deadline passed
        └── DeploymentFailed      the deployment went to `failed`; `reason` says why

Each `ApiError` subclass also carries the platform's stable `code` (e.g. `deployment_not_found`),
so callers can branch on either.
"""

from __future__ import annotations

from typing import Any

import httpx


class ModelfleetError(Exception):
    """Base of every error the SDK raises."""


class ApiError(ModelfleetError):
    """The platform answered with an error status."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class PayloadTooLarge(ApiError):
    pass


class TooManyRequests(ApiError):
    def __init__(
        self, status: int, code: str, message: str, details: Any = None, retry_after: float | None = None
    ):
        super().__init__(status, code, message, details)
        self.retry_after = retry_after


class ServerError(ApiError):
    pass


class Unavailable(ServerError):
    pass


class ConnectionFailed(ModelfleetError):
    """The endpoint could not be reached (refused, DNS, TLS)."""


class WaiterError(ModelfleetError):
    pass


class WaitTimeout(WaiterError, TimeoutError):
    def __init__(self, message: str, last: Any = None) -> None:
        super().__init__(message)
        self.last = last  # the last thing the waiter read


class DeploymentFailed(WaiterError):
    def __init__(self, deployment_id: str, reason: str) -> None:
        super().__init__(f"deployment {deployment_id} failed: {reason}")
        self.deployment_id = deployment_id
        self.reason = reason


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: BadRequest,
    429: TooManyRequests,
    503: Unavailable,
}


def error_class(status: int) -> type[ApiError]:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    if status >= 400:
        return BadRequest
    return ApiError


def error_from_response(response: httpx.Response) -> ApiError:
    """The exception for an error answer of any face: native `{"error": {code, message, details}}`,
    OIP `{"error": "...", "code": "..."}`, Elasticsearch's `{"error": {"type", "reason"}}`, or the
    pipelines face's `{"message", "name"}`."""
    try:
        body = response.json()
    except ValueError:
        body = None
    code, message, details = "", response.text[:500], None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            code = str(err.get("code") or err.get("type") or "")
            message = str(err.get("message") or err.get("reason") or message)
            details = err.get("details")
        elif err is not None:
            code, message, details = str(body.get("code", "")), str(err), body.get("details")
        elif isinstance(body.get("message"), str):  # the pipelines face: {"message", "name"}
            code, message, details = str(body.get("name") or ""), body["message"], body.get("additional_data")
    cls = error_class(response.status_code)
    if cls is TooManyRequests:
        retry = response.headers.get("retry-after")
        return TooManyRequests(
            response.status_code, code, message, details, float(retry) if retry and retry.isdigit() else None
        )
    return cls(response.status_code, code, message, details)
