"""The pure parts of the program: API Gateway route selection, and the stack configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from infra.config import StackConfig
from infra.routes import ROUTES, Auth, CloudRoute, from_starlette, route_keys, selected_route

ROOT = Path(__file__).resolve().parents[2]
SEGMENT = st.sampled_from(["v2", "models", "api", "x", "{name}", "{version}"])


def test_starlette_paths_become_route_keys() -> None:
    assert from_starlette("/api/v1/{path:path}") == "/api/v1/{path+}"
    assert (
        from_starlette("/v2/models/{name}/versions/{version}/infer")
        == "/v2/models/{name}/versions/{version}/infer"
    )
    assert from_starlette("/items/{n:int}") == "/items/{n}"


def test_api_gateway_picks_the_most_specific_route() -> None:
    routes = (
        CloudRoute(("ANY",), "/_ml/{proxy+}", "es_api"),
        CloudRoute(("POST",), "/_ml/trained_models/{ident}/_infer", "invoke"),
        CloudRoute(("GET",), "/api/v1/openapi.json", "api", Auth.NONE),
        CloudRoute(("ANY",), "/api/v1/{proxy+}", "api"),
    )
    assert selected_route(routes, "POST", "/_ml/trained_models/{ident}/_infer") == (
        routes[1],
        "POST /_ml/trained_models/{ident}/_infer",
    )
    assert selected_route(routes, "GET", "/_ml/trained_models/{ident}/_infer")[0].handler == "es_api"  # type: ignore[index]
    assert selected_route(routes, "GET", "/_ml/{path:path}")[0].handler == "es_api"  # type: ignore[index]
    # A literal route covers only that literal: a local greedy route is not "covered" by it.
    assert selected_route(routes, "GET", "/api/v1/{path:path}")[1] == "ANY /api/v1/{proxy+}"  # type: ignore[index]
    assert selected_route(routes, "GET", "/api/v1/openapi.json")[1] == "GET /api/v1/openapi.json"  # type: ignore[index]
    assert selected_route(routes, "GET", "/v2/models/{name}") is None
    # A greedy variable needs a segment: /_ml alone is not under /_ml/{proxy+}.
    assert selected_route(routes, "GET", "/_ml") is None


@given(st.lists(SEGMENT, min_size=1, max_size=5), st.sampled_from(["GET", "POST", "DELETE"]))
def test_an_exact_route_beats_a_greedy_one(segments: list[str], method: str) -> None:
    path = "/" + "/".join(segments)
    exact = CloudRoute((method,), path, "exact")
    greedy = CloudRoute(("ANY",), f"/{segments[0]}/{{proxy+}}", "greedy")
    picked = selected_route((greedy, exact), method, path)
    assert picked is not None and picked[0] is exact
    other = "PUT" if method != "PUT" else "GET"
    fallback = selected_route((greedy, exact), other, path)
    assert (fallback[0] if fallback else None) is (greedy if len(segments) > 1 else None)


def test_the_declared_routes_have_no_duplicates_and_known_handlers() -> None:
    from infra.handlers import handler_spec

    keys = route_keys()
    assert len(keys) == len(set(keys))
    for r in ROUTES:
        handler_spec(r.handler)
        assert all(m in ("ANY", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE") for m in r.methods)
        assert "+}" not in r.path[:-1].split("/")[-1] or r.path.endswith("+}")


def test_the_example_stack_file_is_every_setting_and_valid() -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml.example").read_text())["config"]
    values = {k.split(":", 1)[1]: v for k, v in doc.items() if k.startswith("modelfleet:")}
    from infra.config import _camel

    cfg = StackConfig.from_mapping(
        {k: (v if k == "alarms" else _typed(StackConfig, k, v)) for k, v in values.items()},
        region=doc["aws:region"],
    )
    assert cfg.prefix == "modelfleet-dev" and cfg.region == "eu-west-1" and cfg.worker_cpu == 2048
    assert cfg.alarms.api_5xx_percent == 1.0 and cfg.edge_enabled is False
    text = (ROOT / "Pulumi.dev.yaml.example").read_text()
    documented = set(values) | {
        k for k in StackConfig.__dataclass_fields__ if f"modelfleet:{_camel(k)}:" in text
    }
    documented = {_camel(k) if "_" in k else k for k in documented}
    every = {_camel(f) for f in StackConfig.__dataclass_fields__ if f != "region"}
    assert every <= documented, f"settings missing from the example: {every - documented}"


def _typed(cls: type, key: str, raw: object) -> object:
    from infra.config import _camel
    from infra.config import _typed as typed

    field = next(f for f in cls.__dataclass_fields__.values() if _camel(f.name) == key)
    return typed(field.type, str(raw))


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="workerCPU"):
        StackConfig.from_mapping({"workerCPU": 1})
    with pytest.raises(ValueError, match="alarm"):
        StackConfig.from_mapping({"alarms": {"dlq": 1}})
