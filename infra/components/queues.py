"""Every SQS queue of the spec with its dead-letter queue and redrive policy, and the spec's
topic → queue subscriptions (with their filter policies).

A queue consumed by a Lambda function (QueueSpec.consumer) gets a visibility timeout of at least
6x that function's timeout, as AWS advises, so a message is not redelivered while a slow (or
retried) batch of it is still running.
"""

from __future__ import annotations

import json
from functools import partial

import pulumi
import pulumi_aws as aws

from infra.components.base import StackContext, child
from infra.components.notifications import DLQ_RETENTION_SECONDS, sns_may_send
from infra.handlers import handler_spec
from modelfleet.resources import QueueSpec

VISIBILITY_FACTOR = 6


def _redrive(max_receive_count: int, dlq_arn: str) -> str:
    return json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})


def visibility_timeout(spec: QueueSpec) -> int:
    if spec.consumer is None:
        return spec.visibility_timeout_seconds
    return max(
        spec.visibility_timeout_seconds, VISIBILITY_FACTOR * handler_spec(spec.consumer).timeout_seconds
    )


class Queues(pulumi.ComponentResource):
    queues: dict[str, aws.sqs.Queue]
    dlqs: dict[str, aws.sqs.Queue]

    def __init__(
        self,
        name: str,
        ctx: StackContext,
        topics: dict[str, aws.sns.Topic],
        delivery_failures: aws.sqs.Queue,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("modelfleet:platform:Queues", name, None, opts)
        self.queues, self.dlqs = {}, {}
        for spec in ctx.spec.queues:
            dlq = aws.sqs.Queue(
                f"dlq-{spec.logical}",
                name=ctx.names.dlq(spec.logical),
                message_retention_seconds=DLQ_RETENTION_SECONDS,
                sqs_managed_sse_enabled=True,
                tags=ctx.tags,
                opts=child(self),
            )
            queue = aws.sqs.Queue(
                f"queue-{spec.logical}",
                name=ctx.names.queue(spec.logical),
                visibility_timeout_seconds=visibility_timeout(spec),
                message_retention_seconds=spec.retention_seconds,
                sqs_managed_sse_enabled=True,
                redrive_policy=dlq.arn.apply(partial(_redrive, spec.max_receive_count)),
                tags=ctx.tags,
                opts=child(self),
            )
            # Only its own queue may use the DLQ.
            aws.sqs.RedriveAllowPolicy(
                f"dlq-{spec.logical}-allow",
                queue_url=dlq.url,
                redrive_allow_policy=queue.arn.apply(
                    lambda arn: json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn]})
                ),
                opts=child(self),
            )
            self.queues[spec.logical], self.dlqs[spec.logical] = queue, dlq

        # One policy per queue (a second would replace the first), naming all its topics.
        for logical in dict.fromkeys(sub.queue for sub in ctx.spec.subscriptions):
            queue = self.queues[logical]
            arns = [topics[sub.topic].arn for sub in ctx.spec.subscriptions if sub.queue == logical]
            aws.sqs.QueuePolicy(
                f"queue-{logical}-from-topics",
                queue_url=queue.url,
                policy=pulumi.Output.all(queue.arn, *arns).apply(lambda a: sns_may_send(a[0], list(a[1:]))),
                opts=child(self),
            )
        for sub in ctx.spec.subscriptions:
            queue, topic = self.queues[sub.queue], topics[sub.topic]
            aws.sns.TopicSubscription(
                f"sub-{sub.topic}-{sub.queue}",
                topic=topic.arn,
                protocol="sqs",
                endpoint=queue.arn,
                raw_message_delivery=True,
                filter_policy=json.dumps(sub.filter_policy, sort_keys=True) if sub.filter_policy else None,
                # What SNS cannot deliver (after its retries) is kept, not dropped.
                redrive_policy=delivery_failures.arn.apply(
                    lambda arn: json.dumps({"deadLetterTargetArn": arn})
                ),
                opts=child(self),
            )
        self.register_outputs({f"queue_{k}": q.url for k, q in self.queues.items()})
