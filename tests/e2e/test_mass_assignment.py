"""Mass assignment: no request body lets a caller set a server-owned field (ids, project,
state, version, owner, timestamps, secrets). Every create and update body of the native API (all
of them, read from its OpenAPI document) and of the `_ml` face is sent, valid but for one
server-owned field added, and each is refused with 400 naming that field."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import httpx
import pytest

from tests.e2e.platform import RunningPlatform

pytestmark = pytest.mark.e2e

SERVER_OWNED = (
    "project_id",
    "state",
    "version_no",
    "uid",
    "created_at",
    "updated_at",
    "state_since",
    "started_at",
    "owner",
    "key_id",
    "secret",
    "secret_sha256",
    "revoked_at",
)
# What Elasticsearch itself owns in a trained model or its deployment, plus ours.
ES_SERVER_OWNED = (
    "model_id",
    "create_time",
    "created_by",
    "version",
    "license_level",
    "fully_defined",
    "assignment_state",
    "routing_table",
    "start_time",
    "project_id",
    "uid",
    "state",
)
# A valid body per native route that takes one (keyed like the OpenAPI document, without /api/v1).
NATIVE_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/models"): {
        "name": "ma-model",
        "format": "onnx",
        "files": [{"name": "m.onnx", "sha256": "0" * 64, "size_bytes": 1}],
    },
    ("POST", "/deployments"): {"deployment_id": "ma-dep", "model_id": "ma-model"},
    ("PATCH", "/deployments/{deployment_id}"): {"version": 1, "allocations": 1},
    ("POST", "/nodes"): {
        "node_id": "ma-node",
        "processors": 1,
        "memory_bytes": 1 << 30,
        "url": "http://127.0.0.1:9",
    },
    ("PUT", "/nodes/{node_id}/sync"): {},
    ("POST", "/keys"): {"roles": ["infer"]},
    ("POST", "/projects"): {"project_id": "ma-project"},
    ("POST", "/edge/registration-tokens"): {"node_id": "ma-node"},
    ("POST", "/edge/nodes"): {"name": "ma-node"},
    ("POST", "/edge/nodes/{edge_node_id}/status"): {"revision": 0},
    ("POST", "/edge/services"): {"service_name": "ma-edge", "config": [{"model_id": "m", "nodes": ["n"]}]},
    ("PUT", "/edge/services/{service_id}"): {"config": [{"model_id": "m", "nodes": ["n"]}]},
}
# Server-owned fields of nested request items: the storage key of a file, a version's id.
NESTED: list[tuple[tuple[str, str], str, str]] = [
    (("POST", "/models"), "files", "s3_key"),
    (("POST", "/models"), "files", "project_id"),
    (("POST", "/deployments"), "versions", "version_id"),
    (("POST", "/deployments"), "versions", "project_id"),
]
# Value types shared with stored records, which drop unknown fields rather than refuse them:
# nothing sent in them is stored beyond their own declared fields.
TOLERANT_VALUE_TYPES = {"Signature", "TensorSpec", "InferenceStats", "LatencyHistogram"}  # node-sent values
PATH_IDS = {
    "deployment_id": "ma-none",
    "node_id": "node-1",
    "model_id": "ma-none",
    "service_id": "ma-none",
    "edge_node_id": "ma-none",
}


def _openapi_bodies(doc: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(METHOD, path) -> the request body schema's name, for every route that takes a body."""
    out = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if "requestBody" in op:
                ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                out[(method.upper(), path.removeprefix("/api/v1"))] = ref.rsplit("/", 1)[-1]
    return out


def _refs(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        found = {schema["$ref"].rsplit("/", 1)[-1]} if "$ref" in schema else set()
        return found.union(*(_refs(v) for v in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_refs(v) for v in schema))
    return set()


def test_every_native_request_model_forbids_unknown_fields(platform: RunningPlatform) -> None:
    doc = httpx.get(f"{platform.url}/api/v1/openapi.json").json()
    schemas = doc["components"]["schemas"]
    bodies = _openapi_bodies(doc)
    assert set(bodies) <= set(NATIVE_BODIES), f"no base body for {set(bodies) - set(NATIVE_BODIES)}"
    seen: set[str] = set()
    todo = set(bodies.values())
    while todo:
        name = todo.pop()
        seen.add(name)
        schema = schemas[name]
        if name not in TOLERANT_VALUE_TYPES and schema.get("type") == "object":
            assert schema.get("additionalProperties") is False, f"{name} accepts unknown fields"
        todo |= _refs(schema) - seen


def test_native_bodies_with_a_server_owned_field_are_refused(platform: RunningPlatform) -> None:
    doc = httpx.get(f"{platform.url}/api/v1/openapi.json").json()
    bodies = _openapi_bodies(doc)
    cases: list[tuple[str, str, dict[str, Any], str]] = []
    for (method, template), base in NATIVE_BODIES.items():
        if (method, template) not in bodies:
            continue  # a route another change removed; the test above catches new ones
        path = "/api/v1" + template.format(**PATH_IDS)
        # A field of the base body is legitimate there (POST /projects chooses the project id).
        cases += [(method, path, {**base, f: "x"}, f) for f in SERVER_OWNED if f not in base]
        for route, list_field, f in NESTED:
            if route == (method, template):
                item = (
                    {"model_id": "ma-model", "weight": 100}
                    if list_field == "versions"
                    else base[list_field][0]
                )
                body = {k: v for k, v in base.items() if k != "model_id"} | {list_field: [{**item, f: "x"}]}
                cases.append((method, path, body, f"{list_field}.0.{f}"))
    assert len(cases) >= len(SERVER_OWNED) * 6
    auth = {"authorization": f"Bearer {platform.admin_key}"}
    with httpx.Client(base_url=platform.url, headers=auth, timeout=30) as http:
        for method, path, body, field in cases:
            r = http.request(method, path, json=body)
            assert r.status_code == 400, (method, path, field, r.status_code, r.text)
            err = r.json()["error"]
            assert err["code"] == "validation_failed", (method, path, field, r.text)
            # The only problem is the added field: the rest of the body was valid.
            assert [(d["field"], d["type"]) for d in err["details"]] == [(field, "extra_forbidden")], r.text


def test_ml_bodies_with_a_server_owned_field_are_refused(platform: RunningPlatform) -> None:
    model = f"ma-none-{secrets.token_hex(3)}"  # never created: every body is refused first
    base = f"/_ml/trained_models/{model}"
    bodies: list[tuple[str, str, dict[str, Any]]] = [
        (
            "PUT",
            base,
            {"model_type": "onnx", "inference_config": {"pass_through": {}}, "input": {"field_names": ["t"]}},
        ),
        (
            "PUT",
            f"{base}/definition/0",
            {"definition": base64.b64encode(b"x").decode(), "total_definition_length": 1, "total_parts": 1},
        ),
        ("PUT", f"{base}/vocabulary", {"vocabulary": ["[PAD]", "[UNK]"]}),
        ("POST", f"{base}/deployment/_start", {"number_of_allocations": 1}),
        ("POST", f"{base}/deployment/_update", {"number_of_allocations": 1}),
        ("POST", f"{base}/deployment/_stop", {"force": False}),
    ]
    key = base64.b64encode(platform.admin_key.encode()).decode()
    with httpx.Client(base_url=platform.url, headers={"authorization": f"ApiKey {key}"}, timeout=30) as http:
        for method, path, body in bodies:
            for field in ES_SERVER_OWNED:
                r = http.request(method, path, json={**body, field: "x"})
                assert r.status_code == 400, (method, path, field, r.status_code, r.text)
                error = r.json()["error"]
                assert error["type"] == "x_content_parse_exception", (path, field, r.text)
                assert error["reason"] == f"unknown field [{field}]", (path, field, r.text)
        assert http.get(base).status_code == 404  # nothing was created on the way
