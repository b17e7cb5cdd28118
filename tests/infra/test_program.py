"""The Pulumi program under mocks (no CLI, no cloud): what it would create, checked against the
shared resource spec and the platform's security rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.components.queues import VISIBILITY_FACTOR
from infra.components.workers import ecr_repository_arn
from infra.config import StackConfig
from infra.handlers import HANDLERS, handler_spec
from infra.spec import PlatformSpec
from modelfleet.resources import SCHEDULES, WORKER_DEMAND, Names
from tests.infra.graph import ACCOUNT, REGION, Graph, build

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

NAMES = Names()
ROOT = Path(__file__).resolve().parents[2]
FN = "aws:lambda/function:Function"
QUEUE = "aws:sqs/queue:Queue"


@pytest.fixture(scope="module")
def graph() -> Graph:
    return build(StackConfig(), spec=PlatformSpec())


@pytest.fixture(scope="module")
def production() -> Graph:
    return build(
        StackConfig(
            production=True,
            edge_enabled=True,
            worker_image=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mf-worker:1",
        )
    )


def _fn(graph: Graph, handler: str) -> Any:
    return graph.by_output(FN, "name", f"modelfleet-{handler.replace('_', '-')}")


def test_every_table_of_the_spec_with_its_keys_indexes_and_ttl(graph: Graph, production: Graph) -> None:
    key = graph.of("aws:kms/key:Key")[0].outputs["arn"]
    for spec in PlatformSpec().tables:
        t = graph.by_output("aws:dynamodb/table:Table", "name", NAMES.table(spec.logical)).inputs
        assert (t["hashKey"], t.get("rangeKey")) == (spec.hash_key, spec.range_key)
        assert sorted(a["name"] for a in t["attributes"]) == sorted(spec.attributes)
        indexes = {
            ix["name"]: [(k["attributeName"], k["keyType"]) for k in ix["keySchemas"]]
            for ix in t.get("globalSecondaryIndexes", [])
        }
        assert indexes == {
            ix.name: [(ix.hash_key, "HASH")] + ([(ix.range_key, "RANGE")] if ix.range_key else [])
            for ix in spec.indexes
        }
        assert (t.get("ttl") or {}).get("attributeName") == spec.ttl_attribute
        assert t["pointInTimeRecovery"] == {"enabled": spec.durable}
        assert t["serverSideEncryption"] == {"enabled": True, "kmsKeyArn": key}
        assert t["deletionProtectionEnabled"] is False
        prod = production.by_output("aws:dynamodb/table:Table", "name", NAMES.table(spec.logical)).inputs
        assert prod["deletionProtectionEnabled"] is True


def test_every_queue_has_a_dlq_and_its_redrive(graph: Graph) -> None:
    queues = {q.outputs["arn"]: q for q in graph.of(QUEUE)}
    dlq_arns = set()
    for spec in PlatformSpec().queues:
        q = graph.by_output(QUEUE, "name", NAMES.queue(spec.logical))
        redrive = q.json("redrivePolicy")
        assert redrive["maxReceiveCount"] == spec.max_receive_count
        assert queues[redrive["deadLetterTargetArn"]].outputs["name"] == NAMES.dlq(spec.logical)
        assert q.inputs["sqsManagedSseEnabled"] is True
    for q in graph.of(QUEUE):
        if "redrivePolicy" in q.inputs:
            dlq_arns.add(q.json("redrivePolicy")["deadLetterTargetArn"])
    # Every queue either has a DLQ or is one (an SNS subscription's DLQ counts too).
    for sub in graph.of("aws:sns/topicSubscription:TopicSubscription"):
        if sub.inputs.get("redrivePolicy"):
            dlq_arns.add(sub.json("redrivePolicy")["deadLetterTargetArn"])
    for arn, q in queues.items():
        assert "redrivePolicy" in q.inputs or arn in dlq_arns, f"{q.outputs['name']} has no DLQ and is none"


def test_consumed_queues_outlast_six_consumer_timeouts(graph: Graph) -> None:
    mappings = graph.of("aws:lambda/eventSourceMapping:EventSourceMapping")
    assert len(mappings) == sum(1 for q in PlatformSpec().queues if q.consumer)
    assert any(q.logical == "batch-tasks" and q.consumer == "batch_planner" for q in PlatformSpec().queues)
    for m in mappings:
        queue = graph.by_output(QUEUE, "arn", m.inputs["eventSourceArn"])
        fn = graph.by_output(FN, "arn", m.inputs["functionName"])
        assert queue.inputs["visibilityTimeoutSeconds"] >= VISIBILITY_FACTOR * fn.inputs["timeout"]
    batch = graph.by_output(QUEUE, "name", NAMES.queue("batch-tasks")).inputs
    assert batch["visibilityTimeoutSeconds"] == 6 * handler_spec("batch_planner").timeout_seconds
    # ...and the consumer may receive from it, and only from the queues it consumes.
    policy = _policies_of_role(graph, _fn(graph, "batch_planner").inputs["role"])
    receive = [s for s in policy if "sqs:ReceiveMessage" in s["Action"]]
    assert [s["Resource"] for s in receive] == [
        [graph.by_output(QUEUE, "name", NAMES.queue("batch-tasks")).outputs["arn"]]
    ]


def test_every_topic_and_subscription_of_the_spec(graph: Graph) -> None:
    key = graph.of("aws:kms/key:Key")[0].outputs["arn"]
    for t in PlatformSpec().topics:
        topic = graph.by_output("aws:sns/topic:Topic", "name", NAMES.topic(t.logical))
        assert topic.inputs["kmsMasterKeyId"] == key
    subs = graph.of("aws:sns/topicSubscription:TopicSubscription")
    failures = graph.by_output(QUEUE, "name", NAMES.dlq("sns-delivery")).outputs["arn"]
    for spec in PlatformSpec().subscriptions:
        [sub] = [
            s for s in subs
            if s.inputs["topic"].endswith(f":{NAMES.topic(spec.topic)}")
            and s.inputs["endpoint"].endswith(f":{NAMES.queue(spec.queue)}")
        ]  # fmt: skip
        assert sub.inputs["protocol"] == "sqs" and sub.inputs["rawMessageDelivery"] is True
        assert (sub.json("filterPolicy") or {}) == spec.filter_policy
        assert sub.json("redrivePolicy") == {"deadLetterTargetArn": failures}


def _documents(graph: Graph) -> list[tuple[str, dict[str, Any]]]:
    sources = {
        "aws:iam/rolePolicy:RolePolicy": "policy",
        "aws:iam/role:Role": "assumeRolePolicy",
        "aws:kms/key:Key": "policy",
        "aws:s3/bucketPolicy:BucketPolicy": "policy",
        "aws:sqs/queuePolicy:QueuePolicy": "policy",
    }
    return [(f"{r.typ} {r.name}", r.json(key)) for typ, key in sources.items() for r in graph.of(typ)]


def _listed(v: str | list[str]) -> list[str]:
    return [v] if isinstance(v, str) else v


@pytest.mark.parametrize("which", ["graph", "production"])
def test_no_wildcard_outside_the_declared_exceptions(which: str, request: pytest.FixtureRequest) -> None:
    from infra.policy import WILDCARD_EXCEPTIONS

    g: Graph = request.getfixturevalue(which)
    checked = 0
    for where, doc in _documents(g):
        for st in doc["Statement"]:
            if st["Effect"] != "Allow":
                continue  # a Deny takes away; a broad one (TLS only) is the point
            checked += 1
            actions = _listed(st["Action"])
            exception = WILDCARD_EXCEPTIONS.get(st.get("Sid", ""))
            for a in actions:
                if "*" in a.split(":")[-1]:
                    assert exception and a in exception.actions, f"{where}: wildcard action {a}"
            if "*" in _listed(st.get("Resource", [])):
                assert exception, f"{where}: Resource '*' for {actions} is not a declared exception"
                assert set(actions) <= exception.actions, f"{where}: {actions} exceed {st['Sid']}"
            assert st.get("Principal") != "*", f"{where}: an Allow to everyone"
    assert checked > 40  # the check saw the program's policies, not an empty graph
    assert all(e.why for e in WILDCARD_EXCEPTIONS.values())


def test_the_bucket_is_encrypted_private_versioned_and_tls_only(graph: Graph) -> None:
    key = graph.of("aws:kms/key:Key")[0].outputs["arn"]
    for bucket in graph.of("aws:s3/bucket:Bucket"):
        name = bucket.outputs["bucket"]
        assert name == NAMES.bucket("artifacts", ACCOUNT, REGION)

        def attached(typ: str, b: str = name) -> dict[str, Any]:
            [r] = [r for r in graph.of(typ) if r.inputs["bucket"] == b]
            return r.inputs

        [rule] = attached(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
        )["rules"]
        assert rule["applyServerSideEncryptionByDefault"] == {
            "sseAlgorithm": "aws:kms",
            "kmsMasterKeyId": key,
        }
        block = attached("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
        assert all(
            block[k] is True
            for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        )
        assert (
            attached("aws:s3/bucketVersioning:BucketVersioning")["versioningConfiguration"]["status"]
            == "Enabled"
        )
        [deny] = json.loads(attached("aws:s3/bucketPolicy:BucketPolicy")["policy"])["Statement"]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        rules = {
            r["id"]: r
            for r in attached("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")["rules"]
        }
        assert rules["old-model-versions"]["noncurrentVersionExpiration"]["noncurrentDays"] == 30
        assert rules["batch-outputs"]["expiration"]["days"] == 14


def test_every_handler_has_a_function_with_tracing_and_powertools(graph: Graph) -> None:
    for h in HANDLERS:
        fn = _fn(graph, h.name).inputs
        assert fn["handler"] == h.lambda_handler and fn["timeout"] == h.timeout_seconds
        assert fn["tracingConfig"] == {"mode": "Active"}
        env = fn["environment"]["variables"]
        assert env["POWERTOOLS_SERVICE_NAME"] == f"modelfleet-{h.name}"
        assert {"POWERTOOLS_LOG_LEVEL", "POWERTOOLS_METRICS_NAMESPACE"} <= set(env)
        assert env["MODELFLEET_STACK"] == "modelfleet" and env["MODELFLEET_ACCOUNT_ID"] == ACCOUNT
        assert fn.get("reservedConcurrentExecutions") == h.reserved_concurrency
        assert ("vpcConfig" in fn) == h.in_vpc
    assert len(graph.of(FN)) == len(HANDLERS)
    # every function has a role of its own
    roles = [f.inputs["role"] for f in graph.of(FN)]
    assert len(set(roles)) == len(roles)


def _policies_of_role(graph: Graph, role_arn: str) -> list[dict[str, Any]]:
    role = graph.by_output("aws:iam/role:Role", "arn", role_arn)
    docs = [
        p.json("policy")
        for p in graph.of("aws:iam/rolePolicy:RolePolicy")
        if p.inputs["role"] == role.outputs["name"]
    ]
    assert docs, f"no policy on {role_arn}"
    return [st for d in docs for st in d["Statement"]]


def test_the_authorizer_reads_only_api_keys(graph: Graph) -> None:
    statements = _policies_of_role(graph, _fn(graph, "authorizer").inputs["role"])
    dynamo = [s for s in statements if any(a.startswith("dynamodb:") for a in s["Action"])]
    table = graph.by_output("aws:dynamodb/table:Table", "name", NAMES.table("api_keys")).outputs["arn"]
    assert dynamo == [{"Effect": "Allow", "Action": ["dynamodb:GetItem"], "Resource": [table]}]
    assert not any(
        a.startswith(("s3:", "sqs:")) or a == "sns:Publish" for s in statements for a in s["Action"]
    )


def test_the_scheduler_role_can_invoke_only_the_scheduler_function(graph: Graph) -> None:
    target = _fn(graph, "scheduler").outputs["arn"]
    schedules = graph.of("aws:scheduler/schedule:Schedule")
    assert sorted(json.loads(s.inputs["target"]["input"])["task"] for s in schedules) == sorted(
        t.task for t in SCHEDULES
    )
    role_arns = {s.inputs["target"]["roleArn"] for s in schedules}
    assert {s.inputs["target"]["arn"] for s in schedules} == {target}
    assert len(role_arns) == 1
    [role_arn] = role_arns
    assert _policies_of_role(graph, role_arn) == [
        {
            "Effect": "Allow",
            "Sid": "InvokeSchedulerOnly",
            "Action": ["lambda:InvokeFunction"],
            "Resource": [target],
        }
    ]
    trust = graph.by_output("aws:iam/role:Role", "arn", role_arn).json("assumeRolePolicy")["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "scheduler.amazonaws.com"}]
    groups = {g.outputs["name"] for g in graph.of("aws:scheduler/scheduleGroup:ScheduleGroup")}
    assert groups == {"modelfleet", "modelfleet-services", "modelfleet-pipelines"}
    assert {s.inputs["groupName"] for s in schedules} == {"modelfleet"}
    # The role the platform's run-time schedules name (modelfleet/control/container.py).
    assert role_arn == f"arn:aws:iam::{ACCOUNT}:role/modelfleet-scheduler"
    # Functions that make one-time schedules may pass exactly this role.
    passes = [
        s
        for s in _policies_of_role(graph, _fn(graph, "services").inputs["role"])
        if s["Action"] == ["iam:PassRole"]
    ]
    assert [s["Resource"] for s in passes] == [[role_arn]]


def test_workers_admit_only_the_invoke_router_and_hold_no_aws_role(production: Graph) -> None:
    router_sg = production.named("aws:ec2/securityGroup:SecurityGroup", "router-sg").outputs
    worker_sg = production.named("aws:ec2/securityGroup:SecurityGroup", "worker-sg")
    ingress = production.of("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert ingress and all(
        r.inputs["securityGroupId"] == "worker-sg-id"
        and r.inputs["referencedSecurityGroupId"] == "router-sg-id"
        for r in ingress
    )
    assert "cidrIpv4" not in str([r.inputs for r in ingress])
    assert worker_sg.inputs.get("ingress") in (None, []) and router_sg.get("ingress") in (None, [])
    assert _fn(production, "invoke").inputs["vpcConfig"]["securityGroupIds"] == ["router-sg-id"]
    task = production.of("aws:ecs/taskDefinition:TaskDefinition")[0]
    assert "taskRoleArn" not in task.inputs  # a worker calls no AWS API
    [container] = task.json("containerDefinitions")
    assert container["secrets"][0]["name"] == "MODELFLEET_NODE_KEY"
    assert container["healthCheck"]["command"][-1] == "--health"
    policy = production.of("aws:appautoscaling/policy:Policy")[0].inputs[
        "targetTrackingScalingPolicyConfiguration"
    ]
    metric = policy["customizedMetricSpecification"]
    assert (metric["namespace"], metric["metricName"]) == (WORKER_DEMAND.namespace, WORKER_DEMAND.name)
    assert (
        ecr_repository_arn(f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mf-worker:1")
        == f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/mf-worker"
    )


def test_edge_gets_the_url_and_no_aws_credentials(graph: Graph, production: Graph) -> None:
    assert not graph.of("aws:ssm/parameter:Parameter")
    [param] = production.of("aws:ssm/parameter:Parameter")
    value = param.inputs["value"]
    value = value.get("value", value) if isinstance(value, dict) else value  # a secret-typed input
    assert value == "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
    stage = production.of("aws:apigatewayv2/stage:Stage")[0].inputs
    assert {s["routeKey"] for s in stage["routeSettings"]} == {
        "POST /api/v1/nodes",
        "PUT /api/v1/nodes/{node_id}/sync",
    }
    for g in (graph, production):
        assert not [r for r in g.resources if r.typ.startswith(("aws:iam/user", "aws:iam/accessKey"))]


def test_alarms_cover_dlqs_5xx_throttles_and_workers(graph: Graph) -> None:
    alarms = graph.of("aws:cloudwatch/metricAlarm:MetricAlarm")
    dlq_names = {q.outputs["name"] for q in graph.of(QUEUE) if q.outputs["name"].endswith("-dlq")}
    watched = {a.inputs["dimensions"]["QueueName"] for a in alarms if a.inputs.get("namespace") == "AWS/SQS"}
    assert watched == dlq_names
    throttled = {
        a.inputs["dimensions"]["FunctionName"] for a in alarms if a.inputs.get("metricName") == "Throttles"
    }
    assert throttled == {f.outputs["name"] for f in graph.of(FN)}
    assert any("5xx" in json.dumps(a.inputs.get("metricQueries", [])) for a in alarms)
    assert any(a.inputs.get("metricName") == "RunningTaskCount" for a in alarms)
    topic = graph.by_output("aws:sns/topic:Topic", "name", NAMES.topic("alarms")).outputs["arn"]
    assert all(a.inputs["alarmActions"] == [topic] for a in alarms)


def test_production_protects_data(production: Graph) -> None:
    [bucket] = production.of("aws:s3/bucket:Bucket")
    assert bucket.inputs.get("forceDestroy") is False


def test_the_pulumi_program_runs_from_stack_config(tmp_path: Path) -> None:
    """`pulumi up` runs infra/__main__.py: with a stack's config (as the engine passes it), it
    builds the platform and exports its URL."""
    import runpy
    import zipfile

    import pulumi

    from tests.infra.graph import RecordingMocks

    code = tmp_path / "lambda.zip"
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("functions/__init__.py", "")
    config = {
        "modelfleet:nodeKey": "mfn_a:b",
        "modelfleet:prefix": "mf-stage",
        "modelfleet:workerCpu": "1024",
        "modelfleet:edgeEnabled": "true",
        "modelfleet:lambdaZip": str(code),
        "modelfleet:alarms": json.dumps({"dlqMessages": 3}),
        "aws:region": "eu-west-1",
    }
    pulumi.runtime.set_all_config(config)  # what the engine hands the program
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="modelfleet", stack="stage", preview=False)
    try:
        pulumi.runtime.test(lambda: runpy.run_path(str(ROOT / "infra" / "__main__.py")))()
    finally:
        pulumi.runtime.set_all_config({})
    graph = Graph(mocks.resources)
    assert (
        graph.by_output(FN, "name", "mf-stage-api").inputs["environment"]["variables"]["MODELFLEET_STACK"]
        == "mf-stage"
    )
    task = graph.of("aws:ecs/taskDefinition:TaskDefinition")[0].inputs
    assert task["cpu"] == "1024"
    assert {
        a.inputs["threshold"]
        for a in graph.of("aws:cloudwatch/metricAlarm:MetricAlarm")
        if a.inputs.get("namespace") == "AWS/SQS"
    } == {3}
    assert graph.of("aws:ssm/parameter:Parameter")
