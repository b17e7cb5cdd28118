"""The cross-tenant matrix: every route of every face, called with project B's key and project
A's ids, answers 401/403/404 (a few justified exceptions below), never 5xx, and never shows A's
data. `build_world` makes A's objects (a started native deployment, a key, an `_ml` model with a
deployment) and project B; `run_matrix` sends the attempts and returns the counts
(`sent=N ok=N leaks=0`); the e2e test and the fault suite (row 10) both call it.

The native routes are enumerated from the OpenAPI document, so a route added without a probe
here makes the matrix fail (MatrixIncomplete) instead of silently going untested. The `/_ml`
and `/v2` routes are not in that document and are listed explicitly.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from elasticsearch import Elasticsearch

from modelfleet.client import Client

DENIED = frozenset({401, 403, 404})
UNFORMABLE = (
    "B cannot even form this request: project_id is server-owned, so a body naming A's project "
    "is refused (request models forbid extra fields)"
)
ML = "/_ml/trained_models"


class MatrixIncomplete(AssertionError):
    """A native route the matrix cannot fill: add a probe for it below."""


class BertFiles(Protocol):
    """The tiny BERT classifier of tests/e2e/conftest.py (`tiny_bert`), or anything shaped so."""

    @property
    def classifier_onnx(self) -> Path: ...
    @property
    def vocabulary(self) -> list[str]: ...
    @property
    def classifier_config(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Tenant:
    project_id: str
    key: str


@dataclass
class World:
    url: str
    a: Tenant  # the project whose objects must stay invisible
    b: Tenant  # the intruder, a project of its own with an admin key
    platform_key: str
    ids: dict[str, str]  # path parameter name -> A's id
    markers: frozenset[str]  # strings only A's data contains
    suffix: str

    @property
    def ml_model(self) -> str:
        return self.ids["ml_model_id"]


@dataclass(frozen=True)
class Attempt:
    method: str
    path: str
    allowed: frozenset[int] = DENIED
    body: Any = None  # JSON
    content: bytes | None = None  # raw body instead of JSON
    why: str = ""  # why statuses beyond 401/403/404 are acceptable here
    check: Callable[[httpx.Response], str | None] | None = None  # a further problem, or None


@dataclass
class MatrixResult:
    sent: int = 0
    ok: int = 0
    leaks: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # every attempt not ok, leaks included
    server_errors: int = 0

    def summary(self) -> str:
        return f"sent={self.sent} ok={self.ok} leaks={len(self.leaks)}"


# --- A's objects and project B ----------------------------------------------------------------
def build_world(url: str, a_key: str, platform_key: str, digits_onnx: Path, bert: BertFiles) -> World:
    suffix = secrets.token_hex(4)
    ids = {
        "model_id": f"xt-a-model-{suffix}",
        "deployment_id": f"xt-a-dep-{suffix}",
        "ml_model_id": f"xt-a-ml-{suffix}",
        "name": digits_onnx.name,  # A's artifact file name (generic, so not a marker)
        "node_id": "node-1",  # shared infrastructure, not A's
        "project_id": "default",
    }
    with Client(url, platform_key) as platform:
        created = platform.request("POST", "/api/v1/projects", json={"project_id": f"xt-b-{suffix}"})
    b = Tenant(created["project"]["project_id"], created["admin_key"]["api_key"])
    with Client(url, a_key) as a:
        model = a.register_model(
            digits_onnx, name=f"xt-a-name-{suffix}", format="onnx", model_id=ids["model_id"]
        )
        a.deploy(ids["deployment_id"], model_id=ids["model_id"])
        deployment = a.wait_for_state(ids["deployment_id"], "started")
        ids["version_id"] = deployment["versions"][0]["version_id"]
        key = a.request("POST", "/api/v1/keys", json={"name": f"xt-a-keyname-{suffix}", "roles": ["infer"]})
        ids["key_id"] = key["key"]["key_id"]
        # an edge node of A (registered with its one-time token) and an edge service on it
        ids["edge_node_id"] = f"xt-a-edge-{suffix}"
        token = a.request("POST", "/api/v1/edge/registration-tokens", json={"node_id": ids["edge_node_id"]})
        registered = httpx.post(
            f"{url}/api/v1/edge/nodes",
            json={},
            headers={"authorization": f"Bearer {token['token']}"},
            timeout=60,
        )
        registered.raise_for_status()
        service = a.request(
            "POST",
            "/api/v1/edge/services",
            json={
                "service_name": f"xt-a-edgesvc-{suffix}",
                "config": [{"model_id": ids["model_id"], "nodes": [ids["edge_node_id"]]}],
            },
        )
        ids["service_id"] = service["service_id"]
    key_id, secret = a_key.split(":", 1)
    with Elasticsearch(url, api_key=(key_id, secret), request_timeout=60) as es:
        es.ml.put_trained_model(
            model_id=ids["ml_model_id"],
            model_type="onnx",
            inference_config=bert.classifier_config,
            input={"field_names": ["text_field"]},
            description=f"xt-a-desc-{suffix}",
        )
        data = bert.classifier_onnx.read_bytes()
        es.ml.put_trained_model_definition_part(
            model_id=ids["ml_model_id"],
            part=0,
            definition=base64.b64encode(data).decode(),
            total_definition_length=len(data),
            total_parts=1,
        )
        es.ml.put_trained_model_vocabulary(model_id=ids["ml_model_id"], vocabulary=bert.vocabulary)
        es.ml.start_trained_model_deployment(model_id=ids["ml_model_id"], wait_for="started", timeout="60s")
    markers = {
        ids["model_id"],
        ids["deployment_id"],
        ids["ml_model_id"],
        ids["key_id"],
        f"xt-a-name-{suffix}",
        f"xt-a-keyname-{suffix}",
        f"xt-a-desc-{suffix}",
        model["files"][0]["sha256"],
        ids["service_id"],  # (not A's edge node id: B's own request names it, and may hear it back)
        f"xt-a-edgesvc-{suffix}",
    }
    if len(ids["version_id"]) >= 8:  # only an id that cannot occur by chance
        markers.add(ids["version_id"])
    return World(url, Tenant("default", a_key), b, platform_key, ids, frozenset(markers), suffix)


def destroy_world(w: World) -> None:
    """Remove A's test objects and project B (best effort: each step is independent)."""
    ml = f"{ML}/{w.ml_model}?force=true"
    with Client(w.url, w.a.key) as a, Client(w.url, w.platform_key) as platform:
        for method, path, params in [
            ("DELETE", ml, None),
            ("DELETE", f"/api/v1/deployments/{w.ids['deployment_id']}", {"force": "true"}),
            ("DELETE", f"/api/v1/models/{w.ids['model_id']}", None),
            ("DELETE", f"/api/v1/keys/{w.ids['key_id']}", None),
            ("DELETE", f"/api/v1/edge/services/{w.ids['service_id']}", None),
            ("DELETE", f"/api/v1/edge/nodes/{w.ids['edge_node_id']}", None),
        ]:
            _best_effort(a.request, method, path, params=params)
        _best_effort(platform.request, "DELETE", f"/api/v1/projects/{w.b.project_id}")


def _best_effort(step: Callable[..., object], *args: Any, **kwargs: Any) -> None:
    try:
        step(*args, **kwargs)
    except Exception as e:  # cleanup: report it and go on with the next step
        print(f"cleanup step failed: {e}")


def a_still_sees_its_objects(w: World) -> list[str]:
    """The reverse spot-check: A's own key still sees (and serves) everything B could not."""
    problems: list[str] = []
    auth = {"authorization": f"Bearer {w.a.key}"}
    infer = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]}
    expectations: list[tuple[str, str, Any, Callable[[Any], bool]]] = [
        ("GET", f"/api/v1/models/{w.ids['model_id']}", None, lambda b: b["name"] == f"xt-a-name-{w.suffix}"),
        ("GET", f"/api/v1/deployments/{w.ids['deployment_id']}", None, lambda b: b["state"] == "started"),
        ("GET", "/api/v1/keys", None, lambda b: w.ids["key_id"] in {k["key_id"] for k in b["keys"]}),
        (
            "GET",
            f"{ML}/{w.ml_model}",
            None,
            lambda b: (
                b["trained_model_configs"][0]["description"] == f"xt-a-desc-{w.suffix}"
                and b["trained_model_configs"][0]["fully_defined"] is True
            ),
        ),
        (
            "GET",
            f"{ML}/{w.ml_model}/_stats",
            None,
            lambda b: b["trained_model_stats"][0]["deployment_stats"]["state"] == "started",
        ),
        (
            "GET",
            f"/api/v1/edge/services/{w.ids['service_id']}",
            None,
            lambda b: b["service_name"] == f"xt-a-edgesvc-{w.suffix}",
        ),
        ("GET", f"/v2/models/{w.ids['deployment_id']}", None, lambda b: b["state"] == "started"),
        (
            "POST",
            f"/v2/models/{w.ids['deployment_id']}/infer",
            infer,
            lambda b: b["outputs"][0]["shape"] == [1, 10],
        ),
        (
            "POST",
            f"{ML}/{w.ml_model}/_infer",
            {"docs": [{"text_field": "hello"}]},
            lambda b: b["inference_results"],
        ),
    ]
    with httpx.Client(base_url=w.url, headers=auth, timeout=60) as http:
        for method, path, body, expect in expectations:
            r = http.request(method, path, json=body)
            try:
                good = r.status_code == 200 and bool(expect(r.json()))
            except (KeyError, IndexError, ValueError, TypeError):
                good = False
            if not good:
                problems.append(f"A's own {method} {path} -> {r.status_code}: {r.text[:300]}")
    return problems


# --- the native API: one probe per route of the OpenAPI document --------------------------------
Probe = Callable[["World", str, str], list[Attempt]]


def denied(body: Any = None, content: bytes | None = None) -> Probe:
    return lambda w, m, p: [Attempt(m, p, body=body, content=content)]


def listing(check: Callable[[World, httpx.Response], str | None] | None = None) -> Probe:
    """A collection route: B lists its own project, so 200 is right; A's data must not appear."""
    return lambda w, m, p: [
        Attempt(
            m,
            p,
            frozenset({200}),
            why="a listing of B's own project",
            check=(lambda r: check(w, r)) if check else None,
        )
    ]


def unformable(body: Callable[[World], dict[str, Any]]) -> Probe:
    return lambda w, m, p: [Attempt(m, p, frozenset({400}), body=body(w), why=UNFORMABLE)]


def _only_b_project(w: World, r: httpx.Response) -> str | None:
    listed = [p["project_id"] for p in r.json()["projects"]]
    return None if listed == [w.b.project_id] else f"B's key lists projects {listed}"


def _model_body(w: World) -> dict[str, Any]:
    files = [{"name": "m.onnx", "sha256": "0" * 64, "size_bytes": 1}]
    return {"name": "xt-b-model", "format": "onnx", "files": files, "project_id": w.a.project_id}


def _deploy_attempts(w: World, m: str, p: str) -> list[Attempt]:
    a_model = w.ids["model_id"]
    return [
        Attempt(m, p, body={"deployment_id": f"xt-b-{w.suffix}", "model_id": a_model}),
        Attempt(
            m,
            p,
            body={"deployment_id": f"xt-b2-{w.suffix}", "versions": [{"model_id": a_model, "weight": 100}]},
        ),
        Attempt(
            m,
            p,
            frozenset({400}),
            body={"deployment_id": w.ids["deployment_id"], "model_id": a_model, "project_id": w.a.project_id},
            why=UNFORMABLE,
        ),
    ]


NATIVE_PROBES: dict[tuple[str, str], Probe] = {
    ("POST", "/models"): unformable(_model_body),
    ("GET", "/models"): listing(),
    ("GET", "/models/{model_id}"): denied(),
    ("POST", "/models/{model_id}/uploads"): denied(),
    ("PUT", "/models/{model_id}/files/{name}"): denied(content=b"\0" * 64),
    ("POST", "/models/{model_id}/commit"): denied(),
    ("DELETE", "/models/{model_id}"): denied(),
    ("POST", "/deployments"): _deploy_attempts,
    ("GET", "/deployments"): listing(),
    ("GET", "/deployments/{deployment_id}"): denied(),
    ("PATCH", "/deployments/{deployment_id}"): denied(body={"version": 1, "allocations": 1}),
    ("POST", "/deployments/{deployment_id}/stop"): denied(),
    ("POST", "/deployments/{deployment_id}/start"): denied(),
    ("DELETE", "/deployments/{deployment_id}"): lambda w, m, p: [
        Attempt(m, p),
        Attempt(m, p + "?force=true"),
    ],
    ("GET", "/deployments/{deployment_id}/events"): denied(),
    # Nodes serve every project, so only the platform's own keys may act as one (403).
    ("POST", "/nodes"): denied(
        body={"node_id": "xt-b-node", "processors": 1, "memory_bytes": 1 << 30, "url": "http://127.0.0.1:9"}
    ),
    ("PUT", "/nodes/{node_id}/sync"): denied(body={}),
    ("GET", "/nodes"): listing(),  # shared infrastructure: no project's objects in it
    ("POST", "/keys"): unformable(lambda w: {"roles": ["admin"], "project_id": w.a.project_id}),
    ("GET", "/keys"): listing(),
    ("DELETE", "/keys/{key_id}"): denied(),
    ("POST", "/projects"): denied(body={"project_id": "xt-b-evil"}),  # platform admin only
    ("GET", "/projects"): listing(_only_b_project),
    ("GET", "/projects/{project_id}"): denied(),
    ("DELETE", "/projects/{project_id}"): denied(),
    # Edge: a token is made for the caller's own project (naming A's is unformable); B's admin key
    # is no registration token (403); A's node ids are unknown in B's project (400 at creation).
    ("POST", "/edge/registration-tokens"): unformable(lambda w: {"project_id": w.a.project_id}),
    ("POST", "/edge/nodes"): denied(body={}),
    ("GET", "/edge/nodes"): listing(),
    ("GET", "/edge/nodes/{edge_node_id}"): denied(),
    ("DELETE", "/edge/nodes/{edge_node_id}"): denied(),
    ("POST", "/edge/nodes/{edge_node_id}/key"): denied(),
    ("GET", "/edge/nodes/{edge_node_id}/desired"): denied(),
    ("POST", "/edge/nodes/{edge_node_id}/status"): denied(body={"revision": 0}),
    ("POST", "/edge/services"): lambda w, m, p: [
        Attempt(
            m,
            p,
            frozenset({400}),
            body={
                "service_name": f"xt-b-{w.suffix}",
                "config": [{"model_id": w.ids["model_id"], "nodes": [w.ids["edge_node_id"]]}],
            },
            why="A's edge node is unknown in B's project: refused at creation",
        )
    ],
    ("GET", "/edge/services"): listing(),
    ("GET", "/edge/services/{service_id}"): denied(),
    ("PUT", "/edge/services/{service_id}"): lambda w, m, p: [
        Attempt(m, p, body={"config": [{"model_id": w.ids["model_id"], "nodes": [w.ids["edge_node_id"]]}]})
    ],
    ("DELETE", "/edge/services/{service_id}"): denied(),
    ("GET", "/edge/services/{service_id}/events"): denied(),
}
NATIVE_PREFIX = "/api/v1"


def native_attempts(w: World, openapi: dict[str, Any]) -> list[Attempt]:
    """One or more attempts per route and method of the document; MatrixIncomplete if any route
    has no probe or a path parameter the matrix cannot fill with one of A's ids."""
    out: list[Attempt] = []
    missing: list[str] = []
    for template, item in sorted(openapi["paths"].items()):
        for method in sorted(item):
            if method not in ("get", "post", "put", "patch", "delete", "head"):
                continue
            route = (method.upper(), template.removeprefix(NATIVE_PREFIX))
            probe = NATIVE_PROBES.get(route)
            unknown = [p for p in re.findall(r"\{(\w+)\}", template) if p not in w.ids]
            if probe is None or unknown:
                missing.append(f"{route[0]} {template}" + (f" (parameters {unknown})" if unknown else ""))
                continue
            path = re.sub(r"\{(\w+)\}", lambda g: w.ids[g.group(1)], template)
            out += probe(w, route[0], path)
    if missing:
        raise MatrixIncomplete("the cross-tenant matrix has no probe for: " + "; ".join(missing))
    return out


# --- the Elasticsearch face and the Open Inference Protocol (not in the OpenAPI document) -------
def ml_attempts(w: World) -> list[Attempt]:
    mid = w.ml_model
    pattern = f"xt-a-ml-{w.suffix[:4]}*"
    own = "B's own listing (ids are per project)"

    def empty_expansion(r: httpx.Response) -> str | None:
        count = r.json().get("count")
        return None if count == 0 else f"the wildcard found {count} models"

    part = {
        "definition": base64.b64encode(b"\0" * 8).decode(),
        "total_definition_length": 8,
        "total_parts": 1,
    }
    return [
        Attempt("GET", ML, frozenset({200}), why=own),
        Attempt("GET", f"{ML}/_stats", frozenset({200}), why=own),
        Attempt("GET", f"{ML}/_all", frozenset({200}), why=own),
        Attempt("GET", f"{ML}/{mid}"),
        Attempt("GET", f"{ML}/{mid}/_stats"),
        Attempt(
            "GET",
            f"{ML}/{pattern}",
            frozenset({200}),
            why="a wildcard over B's models",
            check=empty_expansion,
        ),
        Attempt("GET", f"{ML}/{pattern}/_stats", frozenset({200}), why="a wildcard", check=empty_expansion),
        Attempt("PUT", f"{ML}/{mid}/definition/0", body=part),
        Attempt("PUT", f"{ML}/{mid}/vocabulary", body={"vocabulary": ["[PAD]", "[UNK]"]}),
        Attempt("POST", f"{ML}/{mid}/deployment/_start"),
        Attempt("POST", f"{ML}/{mid}/deployment/_start?wait_for=started&number_of_allocations=1"),
        Attempt("POST", f"{ML}/{mid}/deployment/_update", body={"number_of_allocations": 1}),
        Attempt("POST", f"{ML}/{mid}/deployment/_stop"),
        Attempt("POST", f"{ML}/{mid}/deployment/_stop", body={"force": True}),
        # Stopping by wildcard stops B's own matches (none); the reverse check proves A's runs on.
        Attempt("POST", f"{ML}/{pattern}/deployment/_stop", frozenset({200, 404}), why="a wildcard"),
        Attempt("POST", f"{ML}/{mid}/deployment/cache/_clear"),
        Attempt("POST", f"{ML}/{mid}/_infer", body={"docs": [{"text_field": "hello"}]}),
        Attempt("DELETE", f"{ML}/{mid}"),
        Attempt("DELETE", f"{ML}/{mid}?force=true"),
        # Last: a config under A's model id creates B's own model (ids are per project, as in two
        # Elasticsearch clusters); it must not show or change A's (the reverse check), and B
        # deletes it again.
        Attempt(
            "PUT",
            f"{ML}/{mid}",
            frozenset({200}),
            body={
                "model_type": "onnx",
                "inference_config": {"pass_through": {}},
                "input": {"field_names": ["text_field"]},
            },
            why="creates B's own model of that id",
        ),
        Attempt("DELETE", f"{ML}/{mid}", frozenset({200}), why="deletes B's own model of that id"),
    ]


def oip_attempts(w: World) -> list[Attempt]:
    d, v, md = w.ids["deployment_id"], w.ids["version_id"], w.ml_model
    public = "server-level metadata and health: no project's data"
    infer = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]}
    return [
        Attempt("GET", "/v2", frozenset({200}), why=public),
        Attempt("GET", "/v2/health/live", frozenset({200}), why=public),
        Attempt("GET", "/v2/health/ready", frozenset({200}), why=public),
        Attempt("GET", f"/v2/models/{d}"),
        Attempt("GET", f"/v2/models/{d}/versions/{v}"),
        Attempt("GET", f"/v2/models/{d}/ready"),
        Attempt("GET", f"/v2/models/{d}/versions/{v}/ready"),
        Attempt("POST", f"/v2/models/{d}/infer", body=infer),
        Attempt("POST", f"/v2/models/{d}/versions/{v}/infer", body=infer),
        Attempt("GET", f"/v2/models/{md}"),
        Attempt("POST", f"/v2/models/{md}/infer", body=infer),
    ]


# --- sending ------------------------------------------------------------------------------------
def credential_headers(credential: str) -> Iterator[dict[str, str]]:
    """Every face's way of sending the key, in turn, so each one is exercised."""
    encoded = base64.b64encode(credential.encode()).decode()
    forms = [
        {"authorization": f"Bearer {credential}"},
        {"authorization": f"ApiKey {encoded}"},
        {"x-auth-token": credential},
        {"authorization": f"ApiKey {credential}"},
        {"x-api-key": credential},
    ]
    while True:
        yield from forms


def judge(w: World, a: Attempt, r: httpx.Response) -> tuple[bool, str | None]:
    """(ok, problem). A marker that B itself sent (an id in its path or body, which error
    messages echo) is not a leak; any other marker of A's in the answer is."""
    sent = a.path + (json.dumps(a.body) if a.body is not None else "")
    shown = sorted(m for m in w.markers if m in r.text and m not in sent)
    where = f"{a.method} {a.path} -> {r.status_code}"
    if shown:
        return False, f"LEAK {where}: the answer holds A's {shown}: {r.text[:300]}"
    if 200 <= r.status_code < 300 and r.status_code not in a.allowed:
        return False, f"LEAK {where}: another project's key succeeded: {r.text[:300]}"
    if r.status_code not in a.allowed:
        return False, f"{where}, expected {sorted(a.allowed)}: {r.text[:300]}"
    problem = a.check(r) if a.check else None
    return (problem is None), (f"{where}: {problem}" if problem else None)


def run_matrix(w: World, timeout: float = 60.0) -> MatrixResult:
    """Send every attempt with B's key; count what was sent, what answered as it must, and leaks."""
    result = MatrixResult()
    with httpx.Client(base_url=w.url, timeout=timeout) as http:
        doc = http.get(f"{NATIVE_PREFIX}/openapi.json").raise_for_status().json()
        attempts = native_attempts(w, doc) + ml_attempts(w) + oip_attempts(w)
        for a, auth in zip(attempts, credential_headers(w.b.key), strict=False):
            headers = dict(auth)
            kwargs: dict[str, Any] = {}
            if a.content is not None:
                kwargs["content"] = a.content
                headers["content-type"] = "application/octet-stream"
            elif a.body is not None:
                kwargs["json"] = a.body
            r = http.request(a.method, a.path, headers=headers, **kwargs)
            result.sent += 1
            result.server_errors += r.status_code >= 500
            ok, problem = judge(w, a, r)
            result.ok += ok
            if problem:
                result.failures.append(problem)
                if problem.startswith("LEAK"):
                    result.leaks.append(problem)
    return result
