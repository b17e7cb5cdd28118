"""CloudWatch alarms on what goes wrong first: messages in dead-letter queues, the API's 5xx
rate, throttled functions and too few running workers. They publish to the alarm topic, and the
canary gate of service rollouts may read their state."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.components.base import StackContext, child

FIVE_MINUTES = 300


class Alarms(pulumi.ComponentResource):
    alarms: dict[str, aws.cloudwatch.MetricAlarm]

    def __init__(
        self,
        name: str,
        ctx: StackContext,
        topic: aws.sns.Topic,
        dead_letter_queues: dict[str, aws.sqs.Queue],
        functions: dict[str, aws.lambda_.Function],
        api: aws.apigatewayv2.Api,
        workers: tuple[aws.ecs.Cluster, aws.ecs.Service],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("modelfleet:platform:Alarms", name, None, opts)
        t = ctx.cfg.alarms
        o = child(self)
        actions = [topic.arn]
        self.alarms = {}
        for logical, dlq in dead_letter_queues.items():
            self.alarms[f"dlq-{logical}"] = aws.cloudwatch.MetricAlarm(
                f"alarm-dlq-{logical}",
                alarm_description=f"messages in the dead-letter queue of {logical}",
                namespace="AWS/SQS",
                metric_name="ApproximateNumberOfMessagesVisible",
                dimensions={"QueueName": dlq.name},
                statistic="Maximum",
                period=FIVE_MINUTES,
                evaluation_periods=1,
                threshold=t.dlq_messages,
                comparison_operator="GreaterThanOrEqualToThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=actions,
                ok_actions=actions,
                opts=o,
            )
        self.alarms["api-5xx"] = aws.cloudwatch.MetricAlarm(
            "alarm-api-5xx",
            alarm_description="share of API requests answered 5xx (percent)",
            metric_queries=[
                {
                    "id": "errors",
                    "metric": {
                        "namespace": "AWS/ApiGateway",
                        "metric_name": "5xx",
                        "dimensions": {"ApiId": api.id, "Stage": "$default"},
                        "period": FIVE_MINUTES,
                        "stat": "Sum",
                    },
                },
                {
                    "id": "requests",
                    "metric": {
                        "namespace": "AWS/ApiGateway",
                        "metric_name": "Count",
                        "dimensions": {"ApiId": api.id, "Stage": "$default"},
                        "period": FIVE_MINUTES,
                        "stat": "Sum",
                    },
                },
                {
                    "id": "rate",
                    "expression": "IF(requests > 0, 100 * errors / requests, 0)",
                    "label": "5xx percent",
                    "return_data": True,
                },
            ],
            evaluation_periods=1,
            threshold=t.api_5xx_percent,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=actions,
            ok_actions=actions,
            opts=o,
        )
        for handler, fn in functions.items():
            self.alarms[f"throttles-{handler}"] = aws.cloudwatch.MetricAlarm(
                f"alarm-throttles-{handler}",
                alarm_description=f"throttled invocations of {handler}",
                namespace="AWS/Lambda",
                metric_name="Throttles",
                dimensions={"FunctionName": fn.name},
                statistic="Sum",
                period=FIVE_MINUTES,
                evaluation_periods=1,
                threshold=t.throttles,
                comparison_operator="GreaterThanOrEqualToThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=actions,
                opts=o,
            )
        cluster, service = workers
        self.alarms["workers-running"] = aws.cloudwatch.MetricAlarm(
            "alarm-workers-running",
            alarm_description="fewer worker tasks running than the stack's minimum",
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            dimensions={"ClusterName": cluster.name, "ServiceName": service.name},
            statistic="Minimum",
            period=60,
            evaluation_periods=3,
            threshold=t.worker_min_running,
            comparison_operator="LessThanThreshold",
            treat_missing_data="breaching",  # no data: no workers reporting at all
            alarm_actions=actions,
            ok_actions=actions,
            opts=o,
        )
        self.register_outputs({})
