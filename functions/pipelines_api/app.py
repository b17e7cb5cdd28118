"""The pipeline face (the `craft-ai-sdk` client's API), as one Lambda: `handler(event, context)`.

Routes are the client's, under its environment URL (`{prefix}/api/v1/...`) plus the endpoint-token
routes (`{prefix}/endpoints/...`). Thin handlers: parse → modelfleet.faces.pipelines → JSON.
Errors are the client's format: `{"message", "name", "request_id", "additional_data"}`; bad input
is a 4xx, never a 500.
"""

from __future__ import annotations

import base64
import logging
from datetime import datetime
from typing import Any, TypeVar

import orjson
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from functions.api.context import principal
from functions.resolver import ThreadSafeHttpResolver
from modelfleet.control.container import control_plane, utcnow
from modelfleet.control.errors import ControlError, Forbidden, InvalidRequest
from modelfleet.faces.pipelines.errors import error_body
from modelfleet.faces.pipelines.executions import ExecutionFailed
from modelfleet.faces.pipelines.service import PipelineFace, pipeline_face
from schemas.keys import Principal, Role
from schemas.pipelines import (
    DeploymentCreate,
    DeploymentUpdate,
    ExecutionRule,
    LogQuery,
    RefreshBody,
)

PREFIX = "/mlops"
API = "/api/v1"
logger = Logger(service="modelfleet-pipelines")
app = ThreadSafeHttpResolver(strip_prefixes=[PREFIX])
M = TypeVar("M", bound=BaseModel)


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[Any]:
    if body is None:
        return Response(status_code=status, content_type="application/json", body="", headers=headers)
    return Response(
        status_code=status, content_type="application/json", body=orjson.dumps(body).decode(), headers=headers
    )


def _face() -> PipelineFace:
    return pipeline_face()


def _who(write: bool = False) -> Principal:
    who = principal(app)  # type: ignore[arg-type]
    wanted = (Role.ADMIN, Role.MANAGE) if write else (Role.ADMIN, Role.MANAGE, Role.INFER)
    if not who.has(*wanted):
        raise Forbidden("this key may not do this here (it lacks the manage role)", code="missing_role")
    return who


def _raw_body() -> bytes:
    raw = app.current_event.raw_event
    body = raw.get("body") or ""
    if raw.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode() if isinstance(body, str) else bytes(body)


def _content_type() -> str:
    return app.current_event.headers.get("content-type", "") or ""


def _query() -> dict[str, str]:
    return dict(app.current_event.query_string_parameters or {})


def _flag(name: str) -> bool:
    return _query().get(name, "").lower() in ("true", "1", "yes")


def _json_body(required: bool = True) -> Any:
    raw = _raw_body()
    if not raw.strip():
        if required:
            raise InvalidRequest("a JSON body is required")
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"the body is not valid JSON: {e}") from None


def _model(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = ".".join(str(p) for p in err.get("loc", ()))
            msg = "unknown field" if err.get("type") == "extra_forbidden" else err.get("msg", "is invalid")
            problems.append(f"{field}: {msg}" if field else str(msg))
        raise InvalidRequest("; ".join(problems), code="validation_error") from None


def _form_or_json() -> dict[str, Any]:
    """Trigger inputs: JSON, or multipart/form fields holding JSON values (with file parts)."""
    ctype = _content_type().split(";")[0].strip().lower()
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        from modelfleet.faces.pipelines.forms import parse_form

        form = parse_form(_content_type(), _raw_body())
        out: dict[str, Any] = {}
        for k, v in form.fields:
            try:
                out[k] = orjson.loads(v)
            except orjson.JSONDecodeError:
                out[k] = v
        if form.files:
            raise InvalidRequest("file inputs are not supported by this platform yet", code="unsupported")
        return out
    body = _json_body(required=False)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidRequest("the inputs must be a JSON object")
    return body


def _now() -> datetime:
    return utcnow()


# --- auth and environment ----------------------------------------------------------------------------
@app.post(f"{API}/auth/refresh")
def refresh() -> Response[Any]:
    body = _model(RefreshBody, _json_body())
    return _json(200, _face().refresh(control_plane().repo, body.refresh_token, _now()))


@app.get(f"{API}/project-information")
def project_information() -> Response[Any]:
    who = _who()
    return _json(
        200, {"project_id": who.project_id, "included_folders": [], "requirements_path": "requirements.txt"}
    )


@app.get(f"{API}/environment-info")
def environment_info() -> Response[Any]:
    who = _who()
    return _json(200, {"environment_id": who.project_id})


@app.put(f"{API}/environment-variables")
def put_environment_variables() -> Response[Any]:
    body = _json_body()
    _face().put_environment(_who(True), body.get("environment_variables") if isinstance(body, dict) else None)
    return _json(204, None)


@app.get(f"{API}/environment-variables")
def list_environment_variables() -> Response[Any]:
    return _json(200, _face().list_environment(_who()))


@app.delete(f"{API}/environment-variables/<name>")
def delete_environment_variable(name: str) -> Response[Any]:
    return _json(200, _face().delete_environment(_who(True), name))


# --- pipelines ---------------------------------------------------------------------------------------
@app.post(f"{API}/pipelines")
def create_pipeline() -> Response[Any]:
    return _json(201, _face().create_pipeline(_who(True), _content_type(), _raw_body(), _now()))


@app.get(f"{API}/pipelines")
def list_pipelines() -> Response[Any]:
    return _json(200, _face().list_pipelines(_who()))


@app.get(f"{API}/pipelines/<name>")
def get_pipeline(name: str) -> Response[Any]:
    return _json(200, _face().get_pipeline(_who(), name))


@app.delete(f"{API}/pipelines/<name>")
def delete_pipeline(name: str) -> Response[Any]:
    return _json(200, _face().delete_pipeline(_who(True), name, _flag("force_deployments_deletion")))


@app.post(f"{API}/pipelines/<name>/logs")
def pipeline_logs(name: str) -> Response[Any]:
    return _json(200, _face().pipeline_logs(_who(), name))


@app.get(f"{API}/pipelines/<name>/executions/latest")
def pipeline_latest(name: str) -> Response[Any]:
    found = _face().latest_execution(_who(), pipeline=name)
    return _json(204, None) if found is None else _json(200, found)


@app.get(f"{API}/pipelines/<name>/executions")
def pipeline_executions(name: str) -> Response[Any]:
    return _json(200, _face().list_executions(_who(), pipeline=name))


@app.post(f"{API}/pipelines/<name>/run")
def run_pipeline(name: str) -> Response[Any]:
    return _json(200, _face().run_pipeline(_who(True), name, _content_type(), _raw_body(), _now()))


# --- deployments --------------------------------------------------------------------------------------
@app.post(f"{API}/endpoints")
def create_endpoint() -> Response[Any]:
    req = _model(DeploymentCreate, _json_body())
    return _json(201, _face().create_deployment(_who(True), req, ExecutionRule.ENDPOINT, _now()))


@app.post(f"{API}/periodic-deployment")
def create_periodic() -> Response[Any]:
    req = _model(DeploymentCreate, _json_body())
    return _json(201, _face().create_deployment(_who(True), req, ExecutionRule.PERIODIC, _now()))


@app.post(f"{API}/endpoints/<name>/generate-new-token")
def new_token(name: str) -> Response[Any]:
    token = None
    if _raw_body().strip():
        ctype = _content_type().split(";")[0].strip().lower()
        if ctype == "application/json":
            token = (_json_body() or {}).get("endpoint_token")
        else:
            from modelfleet.faces.pipelines.forms import parse_form

            token = dict(parse_form(_content_type(), _raw_body()).fields).get("endpoint_token")
    return _json(200, _face().new_endpoint_token(_who(True), name, token))


@app.get(f"{API}/deployments")
def list_deployments() -> Response[Any]:
    return _json(200, _face().list_deployments(_who()))


@app.get(f"{API}/deployments/<name>")
def get_deployment(name: str) -> Response[Any]:
    return _json(200, _face().get_deployment(_who(), name, _flag("wait_for_completion")))


@app.patch(f"{API}/deployments/<name>")
def update_deployment(name: str) -> Response[Any]:
    req = _model(DeploymentUpdate, _json_body())
    return _json(200, _face().update_deployment(_who(True), name, req, _now()))


@app.delete(f"{API}/deployments/<name>")
def delete_deployment(name: str) -> Response[Any]:
    return _json(200, _face().delete_deployment(_who(True), name))


@app.get(f"{API}/deployments/<name>/executions/latest")
def deployment_latest(name: str) -> Response[Any]:
    found = _face().latest_execution(_who(), deployment=name)
    return _json(204, None) if found is None else _json(200, found)


@app.get(f"{API}/deployments/<name>/executions")
def deployment_executions(name: str) -> Response[Any]:
    return _json(200, _face().list_executions(_who(), deployment=name))


@app.post(f"{API}/deployments/<name>/executions")
def trigger(name: str) -> Response[Any]:
    return _json(200, _face().trigger_by_name(_who(), name, _form_or_json(), _now()))


# --- executions -----------------------------------------------------------------------------------------
@app.get(f"{API}/executions/<execution_id>")
def get_execution(execution_id: str) -> Response[Any]:
    values = _query().get("include_io_values", "true").lower() != "false"
    return _json(200, _face().get_execution(_who(), execution_id, values))


@app.delete(f"{API}/executions/<execution_id>")
def delete_execution(execution_id: str) -> Response[Any]:
    return _json(200, _face().delete_execution(_who(True), execution_id))


@app.get(f"{API}/executions/<execution_id>/outputs")
def outputs(execution_id: str) -> Response[Any]:
    done, body = _face().outputs(_who(), execution_id, _flag("wait_for_completion"))
    if not done:  # not finished within the long-poll: the client asks again
        location = f"{PREFIX}{API}/executions/{execution_id}/outputs?wait_for_completion=true"
        return _json(307, body, {"Location": location})
    return _json(200, body)


@app.get(f"{API}/executions/<execution_id>/outputs/<output_name>")
def output_value(execution_id: str, output_name: str) -> Response[Any]:
    return _json(200, _face().output_value(_who(), execution_id, output_name))


@app.get(f"{API}/executions/<execution_id>/inputs/<input_name>")
def input_value(execution_id: str, input_name: str) -> Response[Any]:
    return _json(200, _face().input_value(_who(), execution_id, input_name))


@app.post(f"{API}/executions/<execution_id>/logs")
def execution_logs(execution_id: str) -> Response[Any]:
    q = _model(LogQuery, _json_body(required=False) or {})
    return _json(200, _face().execution_logs(_who(), execution_id, q.from_ms, q.to_ms, q.limit))


# --- data store ------------------------------------------------------------------------------------------
def _form_field(name: str) -> str | None:
    ctype = _content_type().split(";")[0].strip().lower()
    if ctype == "application/json":
        value = (_json_body(required=False) or {}).get(name)
        return str(value) if value is not None else None
    if not _raw_body().strip():
        return None
    from modelfleet.faces.pipelines.forms import parse_form

    return dict(parse_form(_content_type(), _raw_body()).fields).get(name)


@app.get(f"{API}/data-store/upload")
def datastore_upload() -> Response[Any]:
    who = _who(True)
    return _json(200, _face().datastore.upload_url(who.project_id, _query().get("path_to_object", "")))


@app.post(f"{API}/data-store/download")
def datastore_download() -> Response[Any]:
    who = _who()
    return _json(200, _face().datastore.download_url(who.project_id, _form_field("path_to_object") or ""))


@app.get(f"{API}/data-store/list")
def datastore_list() -> Response[Any]:
    who = _who()
    q = _query()
    return _json(
        200, _face().datastore.list(who.project_id, q.get("folder_path"), q.get("continuation_token"))
    )


@app.post(f"{API}/data-store/information")
def datastore_information() -> Response[Any]:
    who = _who()
    return _json(200, _face().datastore.information(who.project_id, _form_field("path_to_object") or ""))


@app.delete(f"{API}/data-store/delete")
def datastore_delete() -> Response[Any]:
    who = _who(True)
    return _json(200, _face().datastore.delete(who.project_id, _form_field("path_to_object") or ""))


# --- endpoint-token routes (no access token: the endpoint token is the credential) -----------------------
def _endpoint_token() -> str | None:
    auth = app.current_event.headers.get("authorization", "") or ""
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "endpointtoken" else None


@app.post("/endpoints/<url_path>")
def trigger_with_token(url_path: str) -> Response[Any]:
    face = _face()
    d = face.deployment_for_token(url_path, _endpoint_token())
    return _json(200, face.trigger(None, d, _form_or_json(), _now()))


@app.get("/endpoints/v1/<url_path>/executions/<execution_id>")
def endpoint_result(url_path: str, execution_id: str) -> Response[Any]:
    return _json(200, _face().endpoint_result(url_path, _query().get("token"), execution_id))


# --- errors ------------------------------------------------------------------------------------------------
def _request_id() -> str:
    return str(app.current_event.raw_event.get("requestContext", {}).get("requestId", ""))


@app.exception_handler(ControlError)
def _control(e: ControlError) -> Response[Any]:
    return _json(
        e.status, error_body(e.message, e.code, _request_id(), {"details": e.details} if e.details else None)
    )


@app.exception_handler(ExecutionFailed)
def _failed(e: ExecutionFailed) -> Response[Any]:
    rec = e.record
    return _json(
        422,
        error_body(
            str(e),
            "ExecutionFailed",
            _request_id(),
            {"execution_id": rec.execution_id, "status": rec.status.value},
        ),
    )


@app.exception_handler(Exception)
def _unexpected(e: Exception) -> Response[Any]:
    logger.exception("unhandled error")
    return _json(
        500, error_body("an unexpected error occurred; it was logged", "InternalError", _request_id())
    )


@app.not_found
def _not_found(_: Exception) -> Response[Any]:
    path = app.current_event.path
    return _json(
        404, error_body(f"no route {app.current_event.http_method} {path}", "NotFound", _request_id())
    )


def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


logging.getLogger("botocore").setLevel(logging.WARNING)
