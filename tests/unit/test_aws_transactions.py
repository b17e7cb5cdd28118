"""The stand-in's DynamoDB transactions roll back item by item (no whole-table copy), with moto's
semantics: a cancelled or refused transaction leaves every item as it was."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from modelfleet.local import aws_transactions

make_client: Any = boto3.client


@pytest.fixture
def ddb() -> Iterator[Any]:
    aws_transactions.install()
    with mock_aws():
        client = make_client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="tasks",
            KeySchema=[
                {"AttributeName": "job", "KeyType": "HASH"},
                {"AttributeName": "task", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "job", "AttributeType": "S"},
                {"AttributeName": "task", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        client.create_table(
            TableName="jobs",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for t in ("a", "c"):
            client.put_item(TableName="tasks", Item={"job": {"S": "j"}, "task": {"S": t}, "n": {"N": "1"}})
        for i in ("a", "c"):
            client.put_item(TableName="jobs", Item={"id": {"S": i}, "n": {"N": "1"}, "tag": {"S": i}})
        yield client


def state(client: Any) -> dict[str, list[dict[str, Any]]]:
    return {
        name: sorted((item for item in client.scan(TableName=name)["Items"]), key=repr)
        for name in ("tasks", "jobs")
    }


def writes(missing_check: bool) -> list[dict[str, Any]]:
    add = {"UpdateExpression": "ADD n :one", "ExpressionAttributeValues": {":one": {"N": "1"}}}
    items: list[dict[str, Any]] = [
        {"Update": {"TableName": "tasks", "Key": {"job": {"S": "j"}, "task": {"S": "a"}}, **add}},
        {"Put": {"TableName": "tasks", "Item": {"job": {"S": "j"}, "task": {"S": "b"}, "n": {"N": "9"}}}},
        {"Delete": {"TableName": "tasks", "Key": {"job": {"S": "j"}, "task": {"S": "c"}}}},
        {"Update": {"TableName": "jobs", "Key": {"id": {"S": "a"}}, **add}},
        {"Put": {"TableName": "jobs", "Item": {"id": {"S": "b"}, "n": {"N": "9"}}}},
        {"Delete": {"TableName": "jobs", "Key": {"id": {"S": "c"}}}},
    ]
    if missing_check:  # fails: item d does not exist
        items.append(
            {
                "ConditionCheck": {
                    "TableName": "jobs",
                    "Key": {"id": {"S": "d"}},
                    "ConditionExpression": "attribute_exists(id)",
                }
            }
        )
    return items


def test_a_cancelled_transaction_leaves_every_item_as_it_was(ddb: Any) -> None:
    before = state(ddb)
    with pytest.raises(ClientError) as e:
        ddb.transact_write_items(TransactItems=writes(missing_check=True))
    assert e.value.response["Error"]["Code"] == "TransactionCanceledException"
    reasons = [r["Code"] for r in e.value.response["CancellationReasons"]]
    assert reasons == ["None"] * 6 + ["ConditionalCheckFailed"]
    assert state(ddb) == before  # updates undone, puts removed, deletes back with their attributes


def test_a_refused_transaction_changes_nothing(ddb: Any) -> None:
    before = state(ddb)
    twice = writes(missing_check=False)[:1] * 2  # two operations on one item: a ValidationException
    with pytest.raises(ClientError) as e:
        ddb.transact_write_items(TransactItems=twice)
    assert e.value.response["Error"]["Code"] == "ValidationException"
    assert state(ddb) == before


def test_a_transaction_applies_without_copying_the_tables(ddb: Any) -> None:
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends["123456789012"]["us-east-1"]
    tables = {name: backend.tables[name] for name in ("tasks", "jobs")}
    ddb.transact_write_items(TransactItems=writes(missing_check=False))
    assert {name: backend.tables[name] for name in tables} == tables  # the same objects, not copies
    after = state(ddb)
    assert [(i["task"]["S"], i["n"]["N"]) for i in after["tasks"]] == [("a", "2"), ("b", "9")]
    assert sorted(i["id"]["S"] for i in after["jobs"]) == ["a", "b"]

    with pytest.raises(ClientError):
        ddb.transact_write_items(TransactItems=writes(missing_check=True))
    assert {name: backend.tables[name] for name in tables} == tables
    assert state(ddb) == after


def test_outside_a_transaction_a_table_still_copies_deeply(ddb: Any) -> None:
    from moto.dynamodb.models import dynamodb_backends

    table = dynamodb_backends["123456789012"]["us-east-1"].tables["jobs"]
    copied = copy.deepcopy(table)
    assert copied is not table and copied.items is not table.items
    ddb.delete_item(TableName="jobs", Key={"id": {"S": "a"}})
    assert len(copied.items) == 2 and len(table.items) == 1

    arn = ddb.create_backup(TableName="jobs", BackupName="jobs-backup")["BackupDetails"]["BackupArn"]
    ddb.delete_item(TableName="jobs", Key={"id": {"S": "c"}})
    ddb.restore_table_from_backup(TargetTableName="jobs-restored", BackupArn=arn)
    restored = ddb.scan(TableName="jobs-restored")["Items"]
    assert [i["id"]["S"] for i in restored] == ["c"]
