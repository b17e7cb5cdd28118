"""The native control-plane API (`/api/v1`), as one Lambda: `handler(event, context)`.

Routes live in one router per domain; this module includes them and turns every error into
the native face's JSON: `{"error": {"code", "message", "details"?}}`.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
    ResponseValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.api import deployments, edge, keys, models, nodes, projects
from functions.api.context import error_body, json_response
from functions.resolver import ThreadSafeHttpResolver
from modelfleet.adapters.errors import BackendUnavailable
from modelfleet.control.errors import ControlError
from modelfleet.core.errors import InvalidTransition, ValidationFailed

logger = Logger(service="modelfleet-api")
PREFIX = "/api/v1"

# A response that fails its own schema is our bug: 500, logged, never blamed on the caller.
app = ThreadSafeHttpResolver(enable_validation=True, response_validation_error_http_code=500)
for module in (models, deployments, nodes, keys, projects, edge):
    app.include_router(module.router, prefix=PREFIX)


@app.get(f"{PREFIX}/openapi.json", include_in_schema=False)
def openapi() -> Response[Any]:
    return Response(
        status_code=200,
        content_type="application/json",
        body=app.get_openapi_json_schema(title="modelfleet native API", version="1"),
    )


@app.exception_handler(RequestValidationError)
def _validation(e: RequestValidationError) -> Response[Any]:
    details = []
    for err in e.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        details.append({"field": ".".join(loc), "problem": err.get("msg", ""), "type": err.get("type", "")})
    if any(d["type"] == "json_invalid" for d in details):
        return json_response(400, error_body("malformed_json", "the request body is not valid JSON"))
    message = "; ".join(f"{d['field'] or 'body'}: {d['problem']}" for d in details) or "invalid request"
    return json_response(400, error_body("validation_failed", message, details))


@app.exception_handler(RequestUnsupportedContentType)
def _content_type(_: RequestUnsupportedContentType) -> Response[Any]:
    return json_response(
        415, error_body("unsupported_media_type", "send the request body as application/json")
    )


@app.exception_handler(UnicodeDecodeError)
def _not_utf8(_: UnicodeDecodeError) -> Response[Any]:
    return json_response(400, error_body("malformed_json", "the request body is not valid UTF-8 JSON"))


@app.exception_handler(ResponseValidationError)
def _bad_response(e: ResponseValidationError) -> Response[Any]:
    logger.error("response failed its schema", extra={"errors": str(e.errors())[:2000]})
    return json_response(500, error_body("internal_error", "the server built an invalid response"))


@app.exception_handler(ControlError)
def _control(e: ControlError) -> Response[Any]:
    return json_response(e.status, error_body(e.code, e.message, e.details))


@app.exception_handler(InvalidTransition)
def _transition(e: InvalidTransition) -> Response[Any]:
    return json_response(409, error_body("invalid_state", str(e)))


@app.exception_handler(ValidationFailed)
def _core_validation(e: ValidationFailed) -> Response[Any]:
    return json_response(400, error_body("validation_failed", str(e)))


@app.exception_handler(BackendUnavailable)
def _backend(e: BackendUnavailable) -> Response[Any]:
    logger.warning("backend unavailable", extra={"error": str(e)})
    return json_response(503, error_body("backend_unavailable", "a platform backend is unavailable; retry"))


@app.exception_handler(Exception)
def _unexpected(e: Exception) -> Response[Any]:
    logger.exception("unhandled error")
    return json_response(500, error_body("internal_error", "an unexpected error occurred; it was logged"))


@app.not_found
def _not_found(_: Exception) -> Response[Any]:
    return json_response(404, error_body("route_not_found", "no such route"))


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId", log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if not _json_or_raw(event):
        return {
            "statusCode": 415,
            "headers": {"content-type": "application/json"},
            "body": orjson.dumps(
                error_body("unsupported_media_type", "send the request body as application/json")
            ).decode(),
            "isBase64Encoded": False,
        }
    return app.resolve(event, context)


def _json_or_raw(event: dict[str, Any]) -> bool:
    """Bodies are JSON, except file uploads (raw bytes). Any other declared type is refused up front:
    powertools would try to parse forms and multipart, which this API does not speak."""
    if not event.get("body"):
        return True
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    json_like: bool = ctype in ("application/json", "application/octet-stream") or ctype.endswith("+json")
    if json_like:
        return True
    return "/files/" in str(event.get("rawPath", "")) and ctype != "multipart/form-data"


logging.getLogger("botocore").setLevel(logging.WARNING)
