"""Elasticsearch's error envelope, and the translation of core errors into it.

`{"error": {"root_cause": [{"type", "reason"}], "type", "reason"}, "status": N}`: the official
clients read `error.type` for the exception message and `root_cause[0].reason` for its text.
Permanent errors never use 429 or 5xx, which the clients retry.

EsError                      .status, .type, .reason
├── EsBadRequest      400    action_request_validation_exception / illegal_argument_exception
├── EsNotFound        404    resource_not_found_exception
├── EsTimeout         408    elasticsearch_status_exception
├── EsConflict        409    status_exception
└── EsTooManyRequests 429    es_rejected_execution_exception (queue full: retrying is right)
"""

from __future__ import annotations

from typing import Any

from modelfleet.control.errors import ControlError


class EsError(Exception):
    status = 500
    type = "exception"

    def __init__(self, reason: str, type_: str | None = None, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if type_:
            self.type = type_
        if status:
            self.status = status

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.type, self.reason)


class EsBadRequest(EsError):
    status = 400
    type = "illegal_argument_exception"


class EsNotFound(EsError):
    status = 404
    type = "resource_not_found_exception"


class EsTimeout(EsError):
    status = 408
    type = "elasticsearch_status_exception"


class EsConflict(EsError):
    status = 409
    type = "status_exception"


class EsTooManyRequests(EsError):
    status = 429
    type = "es_rejected_execution_exception"


def validation_failed(messages: list[str]) -> EsBadRequest:
    """Elasticsearch's ActionRequestValidationException text: `Validation Failed: 1: a;2: b;`."""
    text = "".join(f"{i}: {m};" for i, m in enumerate(messages, start=1))
    return EsBadRequest(f"Validation Failed: {text}", "action_request_validation_exception")


def error_body(status: int, type_: str, reason: str) -> dict[str, Any]:
    return {
        "error": {"root_cause": [{"type": type_, "reason": reason}], "type": type_, "reason": reason},
        "status": status,
    }


_CONTROL_TYPES = {
    400: "illegal_argument_exception",
    401: "security_exception",
    403: "security_exception",
    404: "resource_not_found_exception",
    409: "status_exception",
    413: "content_too_long_exception",
    429: "es_rejected_execution_exception",
    503: "unavailable_shards_exception",
}


def from_control(e: ControlError) -> EsError:
    """A core error in Elasticsearch's terms (its status is kept)."""
    return EsError(e.message, _CONTROL_TYPES.get(e.status, "exception"), e.status)
