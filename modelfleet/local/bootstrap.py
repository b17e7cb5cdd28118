"""Creates the platform's AWS resources from the one resource spec (idempotently), on the
local moto server. The Pulumi program reads the same spec for the cloud."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from modelfleet.adapters import aws
from modelfleet.config import Settings
from modelfleet.resources import BUCKETS, QUEUES, SUBSCRIPTIONS, TABLES, TOPICS, TableSpec


def _table_request(spec: TableSpec, name: str) -> dict[str, Any]:
    keys = [{"AttributeName": spec.hash_key, "KeyType": "HASH"}]
    if spec.range_key:
        keys.append({"AttributeName": spec.range_key, "KeyType": "RANGE"})
    req: dict[str, Any] = {
        "TableName": name,
        "KeySchema": keys,
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in spec.attributes],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if spec.indexes:
        req["GlobalSecondaryIndexes"] = [
            {
                "IndexName": ix.name,
                "KeySchema": [{"AttributeName": ix.hash_key, "KeyType": "HASH"}]
                + ([{"AttributeName": ix.range_key, "KeyType": "RANGE"}] if ix.range_key else []),
                "Projection": {"ProjectionType": "ALL"},
            }
            for ix in spec.indexes
        ]
    return req


def bootstrap_resources(settings: Settings) -> dict[str, str]:
    """Create what is missing; returns physical names/ARNs by logical name."""
    names = settings.names
    out: dict[str, str] = {}
    ddb = aws.client("dynamodb", settings)
    existing = set(ddb.list_tables().get("TableNames", []))
    for spec in TABLES:
        name = names.table(spec.logical)
        out[f"table:{spec.logical}"] = name
        if name in existing:
            continue
        ddb.create_table(**_table_request(spec, name))
        if spec.ttl_attribute:
            ddb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute}
            )

    s3 = aws.client("s3", settings)
    for b in BUCKETS:
        name = names.bucket(b.logical, region=settings.region)
        out[f"bucket:{b.logical}"] = name
        try:
            s3.head_bucket(Bucket=name)
        except ClientError:
            s3.create_bucket(Bucket=name)

    sqs = aws.client("sqs", settings)
    queue_arns: dict[str, str] = {}
    for q in QUEUES:
        dlq_url = sqs.create_queue(
            QueueName=names.dlq(q.logical), Attributes={"MessageRetentionPeriod": str(14 * 86_400)}
        )["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        url = sqs.create_queue(QueueName=names.queue(q.logical))["QueueUrl"]
        sqs.set_queue_attributes(
            QueueUrl=url,
            Attributes={
                "VisibilityTimeout": str(q.visibility_timeout_seconds),
                "MessageRetentionPeriod": str(q.retention_seconds),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": q.max_receive_count}
                ),
            },
        )
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_arns[q.logical] = arn
        out[f"queue:{q.logical}"] = url

    sns = aws.client("sns", settings)
    topic_arns = {}
    for t in TOPICS:
        topic_arns[t.logical] = sns.create_topic(Name=names.topic(t.logical))["TopicArn"]
        out[f"topic:{t.logical}"] = topic_arns[t.logical]
    for sub in SUBSCRIPTIONS:
        topic = topic_arns[sub.topic]
        endpoint = queue_arns[sub.queue]
        subs = sns.list_subscriptions_by_topic(TopicArn=topic).get("Subscriptions", [])
        if any(s.get("Endpoint") == endpoint for s in subs):
            continue
        attrs = {"RawMessageDelivery": "true"}
        if sub.filter_policy:
            attrs["FilterPolicy"] = json.dumps(sub.filter_policy)
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=endpoint, Attributes=attrs)
    return out
