"""SNS topics of the spec, KMS-encrypted, plus the alarm topic and the queue that catches
notifications SNS could not deliver to a subscribed queue."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra.components.base import StackContext, child

DLQ_RETENTION_SECONDS = 14 * 86_400  # SQS's maximum: two weeks to look at what failed


class Notifications(pulumi.ComponentResource):
    topics: dict[str, aws.sns.Topic]
    alarm_topic: aws.sns.Topic
    delivery_failures: aws.sqs.Queue  # a subscription's redrive target

    def __init__(
        self, name: str, ctx: StackContext, key: aws.kms.Key, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("modelfleet:platform:Notifications", name, None, opts)
        self.topics = {
            t.logical: aws.sns.Topic(
                f"topic-{t.logical}",
                name=ctx.names.topic(t.logical),
                kms_master_key_id=key.arn,
                tags=ctx.tags,
                opts=child(self),
            )
            for t in ctx.spec.topics
        }
        self.alarm_topic = aws.sns.Topic(
            "topic-alarms",
            name=ctx.names.topic("alarms"),
            kms_master_key_id=key.arn,
            tags=ctx.tags,
            opts=child(self),
        )
        if ctx.cfg.alarm_email:
            aws.sns.TopicSubscription(
                "alarms-email",
                topic=self.alarm_topic.arn,
                protocol="email",
                endpoint=ctx.cfg.alarm_email,
                opts=child(self),
            )
        self.delivery_failures = aws.sqs.Queue(
            "sns-delivery-failures",
            name=ctx.names.dlq("sns-delivery"),
            message_retention_seconds=DLQ_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
            tags=ctx.tags,
            opts=child(self),
        )
        topic_arns = pulumi.Output.all(*[t.arn for t in self.topics.values()])
        aws.sqs.QueuePolicy(
            "sns-delivery-failures-policy",
            queue_url=self.delivery_failures.url,
            policy=pulumi.Output.all(self.delivery_failures.arn, topic_arns).apply(
                lambda a: sns_may_send(a[0], list(a[1]))
            ),
            opts=child(self),
        )
        self.register_outputs({f"topic_{k}": t.arn for k, t in self.topics.items()})


def sns_may_send(queue_arn: str, topic_arns: list[str]) -> str:
    """A queue policy: SNS may deliver to the queue, from these topics only."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "FromPlatformTopics",
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": topic_arns}},
                }
            ],
        },
        sort_keys=True,
    )
