"""The cloud program against the local platform: every route the local gateway serves exists in
the HTTP API (served by the same handler, public exactly when it is public locally), and the
resources the local bootstrap creates from the spec are the ones the program declares."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest

import functions
from infra.config import StackConfig
from infra.handlers import HANDLERS, handler_spec
from infra.routes import ROUTES, Auth, selected_route
from modelfleet.resources import Names
from tests.infra.graph import Graph, build

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
ROOT = Path(__file__).resolve().parents[2]
NAMES = Names()


@pytest.fixture(scope="module")
def local() -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.infra.local_inventory"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    inventory: dict[str, Any] = json.loads(out.stdout)
    return inventory


@pytest.fixture(scope="module")
def graph() -> Graph:
    return build(StackConfig())


def test_every_local_route_is_served_in_the_cloud(local: dict[str, Any], graph: Graph) -> None:
    declared = {r.inputs["routeKey"]: r for r in graph.of("aws:apigatewayv2/route:Route")}
    assert len(local["routes"]) >= 10
    problems = []
    for r in local["routes"]:
        for method in r["methods"]:
            found = selected_route(ROUTES, method, r["path"])
            if found is None:
                problems.append(f"{method} {r['path']}: no HTTP API route (add one to infra/routes.py)")
                continue
            cloud, key = found
            assert key in declared, f"{key} is in infra/routes.py but not in the graph"
            module = r["handler_module"]
            if module is not None and handler_spec(cloud.handler).module != module:
                problems.append(
                    f"{method} {r['path']}: served by {module} locally, {cloud.handler} in the cloud"
                )
            public = r["public"][method]
            if public != (cloud.auth == Auth.NONE):
                problems.append(
                    f"{method} {r['path']}: public={public} locally, auth={cloud.auth} in the cloud"
                )
            route = declared[key].inputs
            assert route["authorizationType"] == ("NONE" if cloud.auth == Auth.NONE else "CUSTOM")
    assert not problems, "\n".join(problems)


def test_every_route_targets_its_handlers_function(graph: Graph) -> None:
    integrations = {
        i.outputs.get("id", i.name): i for i in graph.of("aws:apigatewayv2/integration:Integration")
    }
    by_id = {f"integrations/{i.name}-id": i for i in integrations.values()}
    for route in graph.of("aws:apigatewayv2/route:Route"):
        integration = by_id[route.inputs["target"]]
        cloud = next(r for r in ROUTES if route.inputs["routeKey"] in r.keys)
        fn = f"function:modelfleet-{cloud.handler.replace('_', '-')}/invocations"
        assert integration.inputs["integrationUri"].endswith(fn)
        assert integration.inputs["payloadFormatVersion"] == "2.0"


def test_every_handler_module_has_a_line_in_the_handler_table() -> None:
    """A handler another issue adds under functions/ must get its function (infra/handlers.py)."""
    declared = {h.module for h in HANDLERS}
    found = set()
    for info in pkgutil.walk_packages(functions.__path__, "functions."):
        module = import_module(info.name)
        if (
            callable(getattr(module, "handler", None))
            and getattr(module.handler, "__module__", "") == info.name
        ):
            found.add(info.name)
    assert {"functions.api.app", "functions.authorizer", "functions.scheduler"} <= found
    assert found <= declared, f"handlers without a function: {sorted(found - declared)}"
    for h in HANDLERS:
        assert h.module_exists() != h.planned, (
            f"{h.name}: planned={h.planned} but module_exists={h.module_exists()}"
        )


def test_the_bootstrap_and_the_program_create_the_same_resources(local: dict[str, Any], graph: Graph) -> None:
    cloud_tables = {t.outputs["name"]: t.inputs for t in graph.of("aws:dynamodb/table:Table")}
    assert set(cloud_tables) == set(local["tables"])
    for name, t in local["tables"].items():
        c = cloud_tables[name]
        assert {c["hashKey"]: "HASH", **({c["rangeKey"]: "RANGE"} if c.get("rangeKey") else {})} == t["keys"]
        assert sorted(a["name"] for a in c["attributes"]) == t["attributes"]
        indexes = {
            ix["name"]: {k["attributeName"]: k["keyType"] for k in ix["keySchemas"]}
            for ix in c.get("globalSecondaryIndexes", [])
        }
        assert indexes == t["indexes"]
        assert (c.get("ttl") or {}).get("attributeName") == t["ttl"]

    cloud_queues = {q.outputs["name"]: q for q in graph.of("aws:sqs/queue:Queue")}
    arn_to_name = {q.outputs["arn"]: n for n, q in cloud_queues.items()}
    for name, q in local["queues"].items():
        c = cloud_queues[name]
        redrive = c.json("redrivePolicy")
        assert (arn_to_name[redrive["deadLetterTargetArn"]] if redrive else None) == q["dlq"]
        assert (redrive["maxReceiveCount"] if redrive else None) == q["max_receive_count"]
        assert c.inputs["messageRetentionSeconds"] == q["retention"]
        assert c.inputs.get("visibilityTimeoutSeconds", 30) >= q["visibility"]  # 30: SQS default
    # The cloud adds only the SNS delivery-failure queue.
    assert set(cloud_queues) - set(local["queues"]) == {NAMES.dlq("sns-delivery")}

    cloud_topics = {t.outputs["name"] for t in graph.of("aws:sns/topic:Topic")}
    assert cloud_topics - set(local["topics"]) == {NAMES.topic("alarms")}
    assert set(local["topics"]) <= cloud_topics
    cloud_subs = sorted(
        (
            s.inputs["topic"].rsplit(":", 1)[1],
            s.inputs["endpoint"].rsplit(":", 1)[1],
            s.json("filterPolicy") or {},
            s.inputs["rawMessageDelivery"],
        )
        for s in graph.of("aws:sns/topicSubscription:TopicSubscription")
        if s.inputs["protocol"] == "sqs"
    )
    local_subs = sorted(
        (s["topic"], s["queue"], s["filter_policy"], s["raw"]) for s in local["subscriptions"]
    )
    assert cloud_subs == local_subs
