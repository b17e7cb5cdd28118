"""The Elasticsearch trained-model API (`/_ml/trained_models`), as one Lambda: `handler(event, context)`.

Thin handlers: parse (pydantic) → the `_ml` face (modelfleet.faces.elastic) → response. Every
answer carries `X-Elastic-Product: Elasticsearch` (the official clients refuse a 2xx without it)
and every error is Elasticsearch's envelope with its status. `_infer` is data plane: the gateway
serves it next to the nodes, never through here.
"""

from __future__ import annotations

import logging
import time
from typing import Any, TypeVar

import orjson
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from functions.api.context import principal
from functions.resolver import ThreadSafeHttpResolver
from modelfleet.control.container import ControlPlane, control_plane, utcnow
from modelfleet.control.errors import ControlError
from modelfleet.faces.elastic.deployments import MlDeployments
from modelfleet.faces.elastic.errors import EsBadRequest, EsError, error_body, from_control
from modelfleet.faces.elastic.models import TrainedModels, config_view
from modelfleet.faces.elastic.params import parse_bool, start_params, update_params
from modelfleet.faces.elastic.stats import model_stats
from schemas.elastic import DefinitionPart, StartBody, StopBody, TrainedModelPut, UpdateBody, VocabularyPut
from schemas.keys import Role

logger = Logger(service="modelfleet-es")
PRODUCT_HEADER = {"X-Elastic-Product": "Elasticsearch"}
BASE = "/_ml/trained_models"
PARSE_ERROR = "x_content_parse_exception"

app = ThreadSafeHttpResolver()
M = TypeVar("M", bound=BaseModel)


def es_response(status: int, body: dict[str, Any]) -> Response[Any]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=orjson.dumps(body).decode(),
        headers=PRODUCT_HEADER,
    )


def _cp() -> ControlPlane:
    return control_plane()


def _project(*roles: Role) -> str:
    who = principal(app)  # type: ignore[arg-type]  # the resolver has the router's current_event
    if not who.has(*roles):
        wanted = " or ".join(r.value for r in roles)
        raise EsError(
            f"action is unauthorized for API key id [{who.key_id}]: it lacks the {wanted} role",
            "security_exception",
            403,
        )
    return who.project_id


def _query() -> dict[str, str]:
    return dict(app.current_event.query_string_parameters or {})


def _body(model: type[M], required: bool) -> M | None:
    try:
        raw = app.current_event.decoded_body or ""
    except UnicodeDecodeError:
        raise EsBadRequest("the request body is not valid UTF-8 JSON", PARSE_ERROR) from None
    if not raw.strip():
        if required:
            raise EsBadRequest("request body is required", "parse_exception")
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise EsBadRequest(
            f"Failed to parse the request body as JSON: {e}", "x_content_parse_exception"
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = ".".join(str(p) for p in err.get("loc", ()))
            if err.get("type") == "extra_forbidden":
                problems.append(f"unknown field [{field}]")
            else:
                problems.append(f"[{field}] {err.get('msg', 'is invalid')}")
        raise EsBadRequest("; ".join(problems), PARSE_ERROR) from None


def _faces() -> tuple[TrainedModels, MlDeployments]:
    models = TrainedModels(_cp())
    return models, MlDeployments(_cp(), models)


# --- models -------------------------------------------------------------------------------------
@app.put(f"{BASE}/<model_id>")
def put_model(model_id: str) -> Response[Any]:
    project = _project(Role.MANAGE)
    body = _body(TrainedModelPut, required=True)
    assert body is not None
    rec = TrainedModels(_cp()).put_config(project, model_id, body, utcnow())
    return es_response(200, config_view(rec))


@app.put(f"{BASE}/<model_id>/definition/<part>")
def put_definition_part(model_id: str, part: str) -> Response[Any]:
    project = _project(Role.MANAGE)
    if not part.isdigit():
        raise EsBadRequest(f"[part] must be a non-negative integer; got [{part}]")
    body = _body(DefinitionPart, required=True)
    assert body is not None
    TrainedModels(_cp()).put_part(project, model_id, int(part), body, utcnow())
    return es_response(200, {"acknowledged": True})


@app.put(f"{BASE}/<model_id>/vocabulary")
def put_vocabulary(model_id: str) -> Response[Any]:
    project = _project(Role.MANAGE)
    body = _body(VocabularyPut, required=True)
    assert body is not None
    TrainedModels(_cp()).put_vocabulary(project, model_id, body, utcnow())
    return es_response(200, {"acknowledged": True})


def _get(ids: str | None) -> Response[Any]:
    project = _project(Role.MANAGE, Role.INFER)
    q = _query()
    found = TrainedModels(_cp()).expand(project, ids, parse_bool(q, "allow_no_match", True))
    start, size = int(q.get("from", 0) or 0), int(q.get("size", 100) or 100)
    page = found[start : start + size]
    return es_response(200, {"count": len(found), "trained_model_configs": [config_view(m) for m in page]})


@app.get(BASE)
def get_all_models() -> Response[Any]:
    return _get(None)


@app.get(f"{BASE}/<ids>")
def get_models(ids: str) -> Response[Any]:
    return _get(ids)


def _stats(ids: str | None) -> Response[Any]:
    project = _project(Role.MANAGE, Role.INFER)
    models, deployments = _faces()
    found = models.expand(project, ids, parse_bool(_query(), "allow_no_match", True))
    cp = _cp()
    by_model: dict[str, list[Any]] = {}
    for d, routes in deployments.ml_deployments(project):
        by_model.setdefault(d.versions[0].model_id, []).append((d, routes))
    node_stats = cp.repo.node_stats()
    nodes = {n.node_id: n for n in cp.repo.list_nodes()}
    now = utcnow()
    entries = [e for m in found for e in model_stats(m, by_model.get(m.model_id, []), node_stats, nodes, now)]
    return es_response(200, {"count": len(entries), "trained_model_stats": entries})


@app.get(f"{BASE}/_stats")
def get_all_stats() -> Response[Any]:
    return _stats(None)


@app.get(f"{BASE}/<ids>/_stats")
def get_stats(ids: str) -> Response[Any]:
    return _stats(ids)


@app.delete(f"{BASE}/<model_id>")
def delete_model(model_id: str) -> Response[Any]:
    project = _project(Role.MANAGE)
    TrainedModels(_cp()).delete(project, model_id, parse_bool(_query(), "force", False), utcnow())
    return es_response(200, {"acknowledged": True})


# --- deployments --------------------------------------------------------------------------------
@app.post(f"{BASE}/<model_id>/deployment/_start")
def start_deployment(model_id: str) -> Response[Any]:
    project = _project(Role.MANAGE)
    body = _body(StartBody, required=False)
    cp = _cp()
    processors = [n.processors for n in cp.repo.list_nodes() if n.state.value == "ready"]
    params = start_params(model_id, _query(), body, processors)
    _, deployments = _faces()
    result = deployments.start(project, model_id, params, utcnow, time.sleep)
    return es_response(200, result)


@app.post(f"{BASE}/<model_id>/deployment/_update")
def update_deployment(model_id: str) -> Response[Any]:
    project = _project(Role.MANAGE)
    body = _body(UpdateBody, required=False)
    allocations, adaptive = update_params(_query(), body)
    _, deployments = _faces()
    return es_response(200, deployments.update(project, model_id, allocations, adaptive, utcnow()))


@app.post(f"{BASE}/<model_id>/deployment/_stop")
def stop_deployment(model_id: str) -> Response[Any]:
    project = _project(Role.MANAGE)
    body = _body(StopBody, required=False)
    q = _query()
    allow = (
        body.allow_no_match
        if body and body.allow_no_match is not None
        else parse_bool(q, "allow_no_match", True)
    )
    _, deployments = _faces()
    return es_response(200, deployments.stop(project, model_id, allow, utcnow, time.sleep))


@app.post(f"{BASE}/<model_id>/deployment/cache/_clear")
def clear_cache(model_id: str) -> Response[Any]:
    project = _project(Role.MANAGE)
    _, deployments = _faces()
    d = deployments.resolve(project, model_id)
    cp = _cp()
    urls = {n.node_id: n.url for n in cp.repo.list_nodes()}
    targets = [urls[r.node_id] for r in cp.repo.routes(d.uid) if r.node_id in urls]
    cp.nudger.clear_cache(targets, d.uid)
    return es_response(200, {"cleared": True})


# --- errors -------------------------------------------------------------------------------------
@app.exception_handler(EsError)
def _es_error(e: EsError) -> Response[Any]:
    return es_response(e.status, e.body())


@app.exception_handler(ControlError)
def _control(e: ControlError) -> Response[Any]:
    err = from_control(e)
    return es_response(err.status, err.body())


@app.exception_handler(Exception)
def _unexpected(e: Exception) -> Response[Any]:
    logger.exception("unhandled error")
    return es_response(500, error_body(500, "exception", "an unexpected error occurred; it was logged"))


@app.not_found
def _not_found(_: Exception) -> Response[Any]:
    path = app.current_event.path
    return es_response(
        400, error_body(400, "illegal_argument_exception", f"no handler found for uri [{path}]")
    )


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId", log_event=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


logging.getLogger("botocore").setLevel(logging.WARNING)
