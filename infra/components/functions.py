"""One Lambda function per line of the handler table (infra/handlers.py), each with its own
execution role: the actions its `Access` needs, on the platform's named resources."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.components.base import StackContext, child
from infra.components.network import Network
from infra.handlers import HANDLERS, Access, HandlerSpec
from infra.policy import Statement, assume_role, document, wildcard
from modelfleet.resources import WORKER_DEMAND

RUNTIME = "python3.11"
STATE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",  # TransactWriteItems is authorised per item action
    "dynamodb:Query",
    "dynamodb:Scan",
)
READ_ACTIONS = ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan")
ROUTING_TABLES = ("deployments", "routes", "models", "nodes")
CONSUME_ACTIONS = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
)
SCHEDULE_ACTIONS = (
    "scheduler:CreateSchedule",
    "scheduler:GetSchedule",
    "scheduler:UpdateSchedule",
    "scheduler:DeleteSchedule",
)


@dataclass(frozen=True)
class Resources:
    """What the functions' grants point at."""

    tables: dict[str, aws.dynamodb.Table]
    bucket: aws.s3.Bucket
    topics: dict[str, aws.sns.Topic]
    queues: dict[str, aws.sqs.Queue]
    key: aws.kms.Key
    network: Network
    code_zip: str  # `make package` builds it (dist/lambda.zip)


def _index_arn(index: str, table_arn: str) -> str:
    return f"{table_arn}/index/{index}"


def function_name(ctx: StackContext, handler: str) -> str:
    return f"{ctx.cfg.prefix}-{handler.replace('_', '-')}"


def scheduler_role_name(ctx: StackContext) -> str:
    """Named ahead of time: the platform's one-time schedules pass it (modelfleet/control/container.py
    and faces/pipelines/service.py build `<stack>-scheduler` for both the function and the role)."""
    return f"{ctx.cfg.prefix}-scheduler"


# Schedule groups the platform fills at run time: `<stack>-services` (auto-stop) and
# `<stack>-pipelines` (periodic pipeline deployments). It creates them if missing, too.
RUNTIME_SCHEDULE_GROUPS = ("services", "pipelines")


class Functions(pulumi.ComponentResource):
    functions: dict[str, aws.lambda_.Function]
    roles: dict[str, aws.iam.Role]

    def __init__(
        self, name: str, ctx: StackContext, res: Resources, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("modelfleet:platform:Functions", name, None, opts)
        self.functions, self.roles = {}, {}
        # The zip is over Lambda's 50 MB direct-upload limit: it goes to the artifacts bucket under
        # its digest, so an unchanged build is neither uploaded nor deployed again.
        digest = hashlib.sha256(Path(res.code_zip).read_bytes()).hexdigest()
        self.code = aws.s3.BucketObjectv2(
            "lambda-code",
            bucket=res.bucket.id,
            key=f"lambda/{digest}.zip",
            source=pulumi.FileAsset(res.code_zip),
            opts=child(self),
        )
        self.code_sha256 = base64.b64encode(bytes.fromhex(digest)).decode()
        for spec in HANDLERS:
            self._function(ctx, res, spec)
        for q in ctx.spec.queues:
            if q.consumer is None:
                continue
            aws.lambda_.EventSourceMapping(
                f"consume-{q.logical}",
                event_source_arn=res.queues[q.logical].arn,
                function_name=self.functions[q.consumer].arn,
                batch_size=10,
                function_response_types=["ReportBatchItemFailures"],  # one bad message, not the batch
                opts=child(self),
            )
        self.register_outputs({f"function_{k}": f.name for k, f in self.functions.items()})

    def _function(self, ctx: StackContext, res: Resources, spec: HandlerSpec) -> None:
        fname = function_name(ctx, spec.name)
        o = child(self)
        logs = aws.cloudwatch.LogGroup(
            f"logs-{spec.name}",
            name=f"/aws/lambda/{fname}",
            retention_in_days=ctx.cfg.log_retention_days,
            tags=ctx.tags,
            opts=o,
        )
        role = aws.iam.Role(
            f"role-{spec.name}", assume_role_policy=assume_role("lambda.amazonaws.com"), tags=ctx.tags, opts=o
        )
        aws.iam.RolePolicy(
            f"role-{spec.name}-policy",
            role=role.id,
            policy=document(self._grants(ctx, res, spec, logs)),
            opts=o,
        )
        cfg = ctx.cfg
        fn = aws.lambda_.Function(
            f"fn-{spec.name}",
            name=fname,
            description=spec.purpose,
            runtime=RUNTIME,
            architectures=["x86_64"],  # `make package` installs manylinux x86_64 wheels
            handler=spec.lambda_handler,
            s3_bucket=self.code.bucket,
            s3_key=self.code.key,
            source_code_hash=self.code_sha256,
            role=role.arn,
            timeout=spec.timeout_seconds,
            memory_size=cfg.lambda_memory_mb or spec.memory_mb,
            reserved_concurrent_executions=spec.reserved_concurrency,
            tracing_config={"mode": "Active"},
            logging_config={"log_format": "JSON", "log_group": logs.name},
            environment={
                "variables": {
                    "POWERTOOLS_SERVICE_NAME": f"modelfleet-{spec.name}",
                    "POWERTOOLS_LOG_LEVEL": cfg.log_level,
                    "POWERTOOLS_METRICS_NAMESPACE": WORKER_DEMAND.namespace,
                    "MODELFLEET_STACK": cfg.prefix,
                    "MODELFLEET_ACCOUNT_ID": ctx.account,
                    "MODELFLEET_EVENTS_TOPIC_ARN": res.topics["events"].arn,
                    # No route to SNS from the private subnets: the scheduler relays its events.
                    **({"MODELFLEET_PUBLISH_EVENTS": "0"} if spec.in_vpc else {}),
                }
            },
            vpc_config=(
                {
                    "subnet_ids": [s.id for s in res.network.private_subnets],
                    "security_group_ids": [res.network.router_sg.id],
                }
                if spec.in_vpc
                else None
            ),
            tags={**ctx.tags, "modelfleet:planned": str(spec.planned).lower()},
            opts=child(self, depends_on=[logs]),
        )
        self.functions[spec.name], self.roles[spec.name] = fn, role

    def _grants(
        self, ctx: StackContext, res: Resources, spec: HandlerSpec, logs: aws.cloudwatch.LogGroup
    ) -> list[Statement]:
        def table_arns(logicals: tuple[str, ...], indexes: bool = True) -> tuple[pulumi.Output[str], ...]:
            arns: list[pulumi.Output[str]] = []
            for t in ctx.spec.tables:
                if t.logical in logicals:
                    arn = res.tables[t.logical].arn
                    arns.append(arn)
                    if indexes:  # each index by name: queries on them are authorised separately
                        arns += [arn.apply(partial(_index_arn, ix.name)) for ix in t.indexes]
            return tuple(arns)

        events = res.topics["events"]
        out = [
            Statement(("logs:CreateLogStream", "logs:PutLogEvents"), (logs.arn.apply(lambda a: f"{a}:*"),)),
            wildcard("XRayTraces"),
            # The control plane looks the events topic's ARN up by name with the idempotent
            # CreateTopic at start-up (modelfleet/adapters/sns.py); on the existing topic only.
            Statement(("sns:CreateTopic",), (events.arn,)),
        ]
        a = spec.access
        if Access.STATE in a:
            out.append(Statement(STATE_ACTIONS, table_arns(tuple(t.logical for t in ctx.spec.tables))))
        if Access.KEYS_READ in a:
            out.append(Statement(("dynamodb:GetItem",), table_arns(("api_keys",), indexes=False)))
        if Access.ROUTES_READ in a:
            out.append(Statement(READ_ACTIONS, table_arns(ROUTING_TABLES)))
        if Access.ARTIFACTS in a:
            bucket = res.bucket.arn
            out += [
                Statement(
                    ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"), (bucket.apply(lambda b: f"{b}/*"),)
                ),
                Statement(("s3:ListBucket",), (bucket,)),
            ]
        if Access.EVENTS in a:
            out.append(Statement(("sns:Publish",), (events.arn,)))
        if Access.ARTIFACTS in a or Access.EVENTS in a:
            # SSE-KMS objects and the encrypted topic: presigned URLs are signed by this role too.
            out.append(Statement(("kms:GenerateDataKey", "kms:Decrypt"), (res.key.arn,)))
        if Access.NOTIFY in a:
            # Project-owned topics named by services (checked when named, then published to): any
            # topic, but of this account and region.
            out.append(Statement(("sns:Publish", "sns:GetTopicAttributes"), (ctx.arn("sns", "*"),)))
        if Access.METRICS in a:
            ns = {"StringEquals": {"cloudwatch:namespace": WORKER_DEMAND.namespace}}
            out.append(wildcard("PublishPlatformMetrics", ns))
        if Access.SCHEDULES in a:
            groups = [f"{ctx.cfg.prefix}-{g}" for g in RUNTIME_SCHEDULE_GROUPS]
            out += [
                Statement(SCHEDULE_ACTIONS, tuple(ctx.arn("scheduler", f"schedule/{g}/*") for g in groups)),
                Statement(
                    ("scheduler:CreateScheduleGroup", "scheduler:GetScheduleGroup"),
                    tuple(ctx.arn("scheduler", f"schedule-group/{g}") for g in groups),
                ),
                Statement(
                    ("iam:PassRole",),
                    (ctx.global_arn("iam", f"role/{scheduler_role_name(ctx)}"),),
                    condition={"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
                ),
            ]
        if Access.QUEUES_SEND in a:
            out.append(
                Statement(("sqs:SendMessage", "sqs:GetQueueUrl"), tuple(q.arn for q in res.queues.values()))
            )
        consumed = tuple(res.queues[q.logical].arn for q in ctx.spec.queues if q.consumer == spec.name)
        if consumed:
            out.append(Statement(CONSUME_ACTIONS, consumed))
        if spec.in_vpc:
            out.append(wildcard("VpcNetworkInterfaces"))
        return out
