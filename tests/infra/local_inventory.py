"""What the local platform builds, as JSON on stdout: `python -m tests.infra.local_inventory`.

It runs in its own process because it builds the process-wide control plane (and boto3 clients)
against a throwaway moto server: the local bootstrap creates the spec's resources there, which
are then described back (tables, queues, topics, subscriptions); and the gateway's Starlette app
is built and each route probed without a credential, which tells public routes from protected
ones. The infra tests compare all of it with the Pulumi program's graph.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import sys
from typing import Any

STARLETTE_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")


def _sample_path(template: str) -> str:
    def fill(m: re.Match[str]) -> str:
        return {"path": "probe/deeper", "int": "1"}.get(m.group(2) or "", "probe")

    return STARLETTE_PARAM.sub(fill, template)


def _handler_module(endpoint: Any) -> str | None:
    """The Lambda handler module a gateway endpoint runs, when it runs one."""
    owner = getattr(endpoint, "__self__", None)
    if owner is not None and type(owner).__name__ == "EsControl":
        return "functions.es_api.app"  # EsControl.handle bridges to that handler
    if inspect.isfunction(endpoint):
        handler = inspect.getclosurevars(endpoint).nonlocals.get("handler")
        if handler is not None:
            return str(handler.__module__)
    return None


def _routes(app: Any, prefix: str = "") -> list[dict[str, Any]]:
    from starlette.routing import Mount, Route

    out: list[dict[str, Any]] = []
    for r in app.routes:
        if isinstance(r, Mount):
            out += _routes(r, prefix + r.path)
        elif isinstance(r, Route):
            out.append(
                {
                    "path": prefix + r.path,
                    "methods": sorted(r.methods or ["GET", "HEAD"]),
                    "handler_module": _handler_module(r.endpoint),
                }
            )
    return out


def _probe(gateway: Any, routes: list[dict[str, Any]], extra_paths: list[str]) -> None:
    """Mark each route public or not: its sample path answered without a credential."""
    from starlette.testclient import TestClient

    client = TestClient(gateway, raise_server_exceptions=False)  # no `with`: no lifespan
    for r in routes:
        r["public"] = {}
        for m in r["methods"]:
            status = client.request(m, _sample_path(r["path"])).status_code
            r["public"][m] = status not in (401, 403)
    for path in extra_paths:
        routes.append(
            {"path": path, "methods": ["GET"], "handler_module": None, "public": {"GET": True}, "extra": True}
        )


def _aws(settings: Any) -> dict[str, Any]:
    from modelfleet.adapters import aws
    from modelfleet.local.bootstrap import bootstrap_resources

    bootstrap_resources(settings)
    ddb, sqs, sns = (aws.client(s, settings) for s in ("dynamodb", "sqs", "sns"))
    tables = {}
    for name in ddb.list_tables()["TableNames"]:
        t = ddb.describe_table(TableName=name)["Table"]
        ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        tables[name] = {
            "keys": {k["AttributeName"]: k["KeyType"] for k in t["KeySchema"]},
            "attributes": sorted(a["AttributeName"] for a in t["AttributeDefinitions"]),
            "indexes": {
                ix["IndexName"]: {k["AttributeName"]: k["KeyType"] for k in ix["KeySchema"]}
                for ix in t.get("GlobalSecondaryIndexes", [])
            },
            "ttl": ttl.get("AttributeName") if ttl.get("TimeToLiveStatus") == "ENABLED" else None,
        }
    queues = {}
    for url in sqs.list_queues().get("QueueUrls", []):
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        redrive = json.loads(attrs["RedrivePolicy"]) if "RedrivePolicy" in attrs else None
        queues[url.rsplit("/", 1)[1]] = {
            "visibility": int(attrs["VisibilityTimeout"]),
            "retention": int(attrs["MessageRetentionPeriod"]),
            "dlq": redrive["deadLetterTargetArn"].rsplit(":", 1)[1] if redrive else None,
            "max_receive_count": int(redrive["maxReceiveCount"]) if redrive else None,
        }
    topics, subscriptions = [], []
    for t in sns.list_topics()["Topics"]:
        arn = t["TopicArn"]
        topics.append(arn.rsplit(":", 1)[1])
        for s in sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]:
            attrs = sns.get_subscription_attributes(SubscriptionArn=s["SubscriptionArn"])["Attributes"]
            subscriptions.append(
                {
                    "topic": arn.rsplit(":", 1)[1],
                    "queue": s["Endpoint"].rsplit(":", 1)[1],
                    "filter_policy": json.loads(attrs["FilterPolicy"]) if "FilterPolicy" in attrs else {},
                    "raw": attrs.get("RawMessageDelivery") == "true",
                }
            )
    return {"tables": tables, "queues": queues, "topics": sorted(topics), "subscriptions": subscriptions}


def main() -> int:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        os.environ.update(
            {
                "MODELFLEET_AWS_ENDPOINT": f"http://{host}:{port}",
                "MODELFLEET_STACK": "modelfleet",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1",
            }
        )
        from modelfleet.config import Settings
        from modelfleet.gateway.app import PUBLIC_API_PATHS, create_app

        settings = Settings.from_env()
        inventory = _aws(settings)
        gateway = create_app(settings)
        routes = _routes(gateway.app)
        _probe(gateway, routes, sorted(PUBLIC_API_PATHS))
        inventory["routes"] = routes
        json.dump(inventory, sys.stdout)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
