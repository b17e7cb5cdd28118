"""Worker nodes on ECS Fargate: the worker image (docker/worker.Dockerfile) registering with the
control plane exactly as local nodes do (HTTPS to the API, a node key), scaled on the platform's
demand signal (modelfleet.resources.WORKER_DEMAND).

The task has no task role: a worker calls no AWS API. It fetches artifacts through presigned URLs
the control plane hands it, and its only credential is its node key (from Secrets Manager,
injected by ECS through the execution role).
"""

from __future__ import annotations

import json
import re

import pulumi
import pulumi_aws as aws

from infra.components.base import StackContext, child
from infra.components.network import WORKER_DATA_PORT, WORKER_HTTP_PORT, Network
from infra.policy import Statement, assume_role, document, wildcard
from modelfleet.resources import WORKER_DEMAND

ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/(?P<repo>[^:@]+)"
)
MODEL_MEMORY_SHARE = 0.75  # of the task's memory, offered to models (the rest: Python, buffers)
HEALTH_COMMAND = ["CMD", "python", "/opt/modelfleet/entrypoint.py", "--health"]


def ecr_repository_arn(image: str) -> str | None:
    m = ECR_IMAGE.match(image)
    return f"arn:aws:ecr:{m['region']}:{m['account']}:repository/{m['repo']}" if m else None


class Workers(pulumi.ComponentResource):
    cluster: aws.ecs.Cluster
    service: aws.ecs.Service
    execution_role: aws.iam.Role
    node_key: aws.secretsmanager.Secret

    def __init__(
        self,
        name: str,
        ctx: StackContext,
        network: Network,
        control_url: pulumi.Input[str],
        node_key: pulumi.Input[str],
        key: aws.kms.Key,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("modelfleet:platform:Workers", name, None, opts)
        o = child(self)
        cfg = ctx.cfg
        self.cluster = aws.ecs.Cluster(
            "cluster",
            name=cfg.prefix,
            settings=[{"name": "containerInsights", "value": "enabled"}],
            tags=ctx.tags,
            opts=o,
        )
        logs = aws.cloudwatch.LogGroup(
            "worker-logs",
            name=f"/ecs/{cfg.prefix}-worker",
            retention_in_days=cfg.log_retention_days,
            tags=ctx.tags,
            opts=o,
        )
        self.node_key = aws.secretsmanager.Secret(
            "node-key",
            name=f"{cfg.prefix}/node-key",
            kms_key_id=key.arn,
            description="the cloud worker nodes' key (role node, project _system)",
            tags=ctx.tags,
            opts=o,
        )
        aws.secretsmanager.SecretVersion(
            "node-key-value", secret_id=self.node_key.id, secret_string=pulumi.Output.secret(node_key), opts=o
        )

        self.execution_role = aws.iam.Role(
            "worker-execution-role",
            assume_role_policy=assume_role("ecs-tasks.amazonaws.com"),
            tags=ctx.tags,
            opts=o,
        )
        grants = [
            Statement(("logs:CreateLogStream", "logs:PutLogEvents"), (logs.arn.apply(lambda a: f"{a}:*"),)),
            Statement(("secretsmanager:GetSecretValue",), (self.node_key.arn,)),
            Statement(("kms:Decrypt",), (key.arn,)),
        ]
        repo = ecr_repository_arn(cfg.worker_image)
        if repo:
            grants += [
                wildcard("EcrLogin"),
                Statement(
                    ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"),
                    (repo,),
                ),
            ]
        aws.iam.RolePolicy(
            "worker-execution-policy", role=self.execution_role.id, policy=document(grants), opts=o
        )

        processors = max(1, cfg.worker_cpu // 1024)
        container = pulumi.Output.all(control_url, logs.name, self.node_key.arn).apply(
            lambda a: json.dumps(
                [
                    {
                        "name": "worker",
                        "image": cfg.worker_image,
                        "essential": True,
                        "portMappings": [
                            {"containerPort": WORKER_HTTP_PORT, "protocol": "tcp"},
                            {"containerPort": WORKER_DATA_PORT, "protocol": "tcp"},
                        ],
                        "environment": [
                            {"name": "MODELFLEET_CONTROL_URL", "value": a[0].rstrip("/")},
                            {"name": "MODELFLEET_PROCESSORS", "value": str(processors)},
                            {
                                "name": "MODELFLEET_MEMORY_BYTES",
                                "value": str(int(cfg.worker_memory_mb * MODEL_MEMORY_SHARE) * 1024 * 1024),
                            },
                        ],
                        "secrets": [{"name": "MODELFLEET_NODE_KEY", "valueFrom": a[2]}],
                        "healthCheck": {
                            "command": HEALTH_COMMAND,
                            "interval": 15,
                            "timeout": 5,
                            "retries": 3,
                            "startPeriod": 30,
                        },
                        "readonlyRootFilesystem": False,  # models are written under /var/lib/modelfleet
                        "logConfiguration": {
                            "logDriver": "awslogs",
                            "options": {
                                "awslogs-group": a[1],
                                "awslogs-region": ctx.region,
                                "awslogs-stream-prefix": "worker",
                            },
                        },
                    }
                ],
                sort_keys=True,
            )
        )
        task = aws.ecs.TaskDefinition(
            "worker-task",
            family=f"{cfg.prefix}-worker",
            requires_compatibilities=["FARGATE"],
            network_mode="awsvpc",
            cpu=str(cfg.worker_cpu),
            memory=str(cfg.worker_memory_mb),
            execution_role_arn=self.execution_role.arn,
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            container_definitions=container,
            tags=ctx.tags,
            opts=o,
        )
        self.service = aws.ecs.Service(
            "worker-service",
            name=f"{cfg.prefix}-worker",
            cluster=self.cluster.arn,
            task_definition=task.arn,
            launch_type="FARGATE",
            desired_count=cfg.worker_min,
            network_configuration={
                "subnets": [s.id for s in network.public_subnets],
                "security_groups": [network.worker_sg.id],
                "assign_public_ip": True,
            },
            deployment_circuit_breaker={"enable": True, "rollback": True},
            # A node that stops is marked lost and its allocations move: replace one at a time.
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            tags=ctx.tags,
            opts=child(self, ignore_changes=["desiredCount"]),  # the scaling policy owns it
        )
        target = aws.appautoscaling.Target(
            "worker-scaling-target",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=pulumi.Output.all(self.cluster.name, self.service.name).apply(
                lambda a: f"service/{a[0]}/{a[1]}"
            ),
            min_capacity=cfg.worker_min,
            max_capacity=cfg.worker_max,
            opts=o,
        )
        aws.appautoscaling.Policy(
            "worker-scaling-demand",
            policy_type="TargetTrackingScaling",
            service_namespace=target.service_namespace,
            scalable_dimension=target.scalable_dimension,
            resource_id=target.resource_id,
            target_tracking_scaling_policy_configuration={
                "target_value": cfg.worker_target_demand,
                "customized_metric_specification": {
                    "namespace": WORKER_DEMAND.namespace,
                    "metric_name": WORKER_DEMAND.name,
                    "dimensions": [{"name": WORKER_DEMAND.dimension, "value": cfg.prefix}],
                    "statistic": "Average",
                },
                "scale_in_cooldown": 300,  # a node's allocations move when it goes: go down slowly
                "scale_out_cooldown": 60,
            },
            opts=o,
        )
        self.register_outputs({"cluster": self.cluster.name})
