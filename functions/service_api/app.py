"""The service deployment API (`/v1/{project_id}/services`, `/v1/{project_id}/models`), as one
Lambda: `handler(event, context)`.

Thin handlers: authenticate (the authorizer's context) and check the path's project against the
caller's, parse (pydantic; every problem gets its code), then the face (modelfleet.faces.service).
Errors are the face's `{"error_code": "ModelArts.xxxx", "error_msg": "..."}` with their status
(the code table is in modelfleet/faces/service/errors.py). A project that is not the caller's
answers 403 on project-level routes and 404 on a service or model, as if it did not exist.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import orjson
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from functions.api.context import principal
from functions.idempotency import once
from functions.resolver import ThreadSafeHttpResolver
from modelfleet.adapters.errors import BackendUnavailable
from modelfleet.control.container import control_plane, utcnow
from modelfleet.control.errors import ControlError
from modelfleet.core.errors import InvalidTransition, ValidationFailed
from modelfleet.faces.service.errors import ServiceError, bad, error_body, face_code
from modelfleet.faces.service.models import ServiceModels
from modelfleet.faces.service.services import ServiceFace, not_found
from modelfleet.faces.service.validation import from_pydantic
from schemas.keys import Role
from schemas.services import ServiceCreate, ServiceModelArtifact, ServiceUpdate

logger = Logger(service="modelfleet-services")
BASE = "/v1/<project_id>"

app = ThreadSafeHttpResolver()
M = TypeVar("M", bound=BaseModel)


def respond(status: int, body: Any) -> Response[Any]:
    return Response(
        status_code=status,
        content_type="application/json",
        body="" if body is None else orjson.dumps(body).decode(),
    )


def _caller(project_id: str, *roles: Role, obj: str | None = None) -> str:
    """The caller's project, which must be the path's: else 404 for an object (it does not exist
    for this caller) and 403 for the project itself."""
    who = principal(app)  # type: ignore[arg-type]  # the resolver carries the current event
    if who.project_id != project_id:
        if obj is not None:
            raise ServiceError(404, obj, "the requested resource was not found")
        raise ServiceError(403, "ModelArts.0105", f"this credential cannot act in project '{project_id}'")
    if not who.has(*roles):
        wanted = " or ".join(r.value for r in roles)
        raise ServiceError(403, "ModelArts.0105", f"this credential lacks the {wanted} role")
    return project_id


def _body(model: type[M]) -> M:
    try:
        raw = app.current_event.decoded_body or ""
    except UnicodeDecodeError:
        raise bad("ModelArts.0101", "the request body is not valid UTF-8 JSON") from None
    if not raw.strip():
        raise bad("ModelArts.0101", "a JSON request body is required")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad("ModelArts.0101", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad("ModelArts.0101", "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise from_pydantic(e) from None


def _query() -> dict[str, str]:
    return dict(app.current_event.query_string_parameters or {})


def _services() -> ServiceFace:
    return ServiceFace(control_plane())


# --- services -------------------------------------------------------------------------------------
@app.post(f"{BASE}/services")
def create_service(project_id: str) -> Response[Any]:
    project = _caller(project_id, Role.MANAGE)
    body = _body(ServiceCreate)

    def create() -> tuple[int, Any]:
        return 200, _services().create(project, body, utcnow())

    # An `Idempotency-Key` header makes a retried create answer the first one's service_id.
    status, answer = once(app, project, "POST /v1/services", body.model_dump(mode="json"), create)  # type: ignore[arg-type]
    return respond(status, answer)


@app.get(f"{BASE}/services")
def list_services(project_id: str) -> Response[Any]:
    project = _caller(project_id, Role.MANAGE, Role.INFER)
    return respond(200, _services().list(project, _query(), utcnow()))


@app.get(f"{BASE}/services/<service_id>")
def get_service(project_id: str, service_id: str) -> Response[Any]:
    project = _caller(project_id, Role.MANAGE, Role.INFER, obj="ModelArts.3501")
    return respond(200, _services().get(project, service_id, utcnow()))


@app.get(f"{BASE}/services/<service_id>/events")
def service_events(project_id: str, service_id: str) -> Response[Any]:
    project = _caller(project_id, Role.MANAGE, Role.INFER, obj="ModelArts.3501")
    return respond(200, _services().events(project, service_id))


@app.put(f"{BASE}/services/<service_id>")
def update_service(project_id: str, service_id: str) -> Response[Any]:
    project = _caller(project_id, Role.MANAGE, obj="ModelArts.3501")
    face = _services()
    face.get(project, service_id, utcnow())  # 404 before judging the body
    body = _body(ServiceUpdate)
    return respond(200, face.update(project, service_id, body, utcnow()))


@app.post(f"{BASE}/services/<service_id>/stop")
def stop_service(project_id: str, service_id: str) -> Response[Any]:
    project = _caller(project_id, Role.MANAGE, obj="ModelArts.3501")
    return respond(200, _services().stop(project, service_id, utcnow()))


@app.post(f"{BASE}/services/<service_id>/start")
def start_service(project_id: str, service_id: str) -> Response[Any]:
    project = _caller(project_id, Role.MANAGE, obj="ModelArts.3501")
    return respond(200, _services().start(project, service_id, utcnow()))


@app.delete(f"{BASE}/services/<service_id>")
def delete_service(project_id: str, service_id: str) -> Response[Any]:
    project = _caller(project_id, Role.MANAGE, obj="ModelArts.3501")
    _services().delete(project, service_id, utcnow())
    return respond(204, None)


# --- models ---------------------------------------------------------------------------------------
@app.post(f"{BASE}/models")
def create_model(project_id: str) -> Response[Any]:
    project = _caller(project_id, Role.MANAGE)
    body = _body(ServiceModelArtifact)
    return respond(200, ServiceModels(control_plane()).create(project, body, utcnow()))


@app.get(f"{BASE}/models")
def list_models(project_id: str) -> Response[Any]:
    project = _caller(project_id, Role.MANAGE, Role.INFER)
    return respond(200, ServiceModels(control_plane()).list(project, _query()))


@app.get(f"{BASE}/models/<model_id>")
def get_model(project_id: str, model_id: str) -> Response[Any]:
    project = _caller(project_id, Role.MANAGE, Role.INFER, obj="ModelArts.3602")
    return respond(200, ServiceModels(control_plane()).get(project, model_id))


@app.delete(f"{BASE}/models/<model_id>")
def delete_model(project_id: str, model_id: str) -> Response[Any]:
    project = _caller(project_id, Role.MANAGE, obj="ModelArts.3602")
    ServiceModels(control_plane()).delete(project, model_id)
    return respond(204, None)


# --- errors ---------------------------------------------------------------------------------------
@app.exception_handler(ControlError)
def _control(e: ControlError) -> Response[Any]:
    code = face_code(e)
    if e.status == 404 and code == "ModelArts.0106":
        code = "ModelArts.3501"
    return respond(e.status, error_body(code, e.message))


@app.exception_handler(InvalidTransition)
def _transition(e: InvalidTransition) -> Response[Any]:
    return respond(409, error_body("ModelArts.3502", str(e)))


@app.exception_handler(ValidationFailed)
def _core_validation(e: ValidationFailed) -> Response[Any]:
    return respond(400, error_body("ModelArts.0102", str(e)))


@app.exception_handler(BackendUnavailable)
def _backend(e: BackendUnavailable) -> Response[Any]:
    logger.warning("backend unavailable", extra={"error": str(e)})
    return respond(503, error_body("ModelArts.0503", "a platform backend is unavailable; retry"))


@app.exception_handler(Exception)
def _unexpected(e: Exception) -> Response[Any]:
    logger.exception("unhandled error")
    return respond(500, error_body("ModelArts.0500", "an unexpected error occurred; it was logged"))


@app.not_found
def _not_found(_: Exception) -> Response[Any]:
    return respond(404, error_body("ModelArts.0106", "no such route"))


def _json_body(event: dict[str, Any]) -> bool:
    if not event.get("body"):
        return True
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    return bool(ctype == "application/json" or ctype.endswith("+json"))


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId", log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if not _json_body(event):
        return {
            "statusCode": 415,
            "headers": {"content-type": "application/json"},
            "body": orjson.dumps(
                error_body("ModelArts.0103", "send the request body as application/json")
            ).decode(),
            "isBase64Encoded": False,
        }
    return app.resolve(event, context)


__all__ = ["handler", "not_found"]

logging.getLogger("botocore").setLevel(logging.WARNING)
