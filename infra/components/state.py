"""DynamoDB tables, one per TableSpec of the shared resource spec (modelfleet/resources.py): the
same names, keys, indexes and TTL attributes the local bootstrap creates."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from infra.components.base import StackContext, child
from modelfleet.resources import TableSpec


class State(pulumi.ComponentResource):
    tables: dict[str, aws.dynamodb.Table]

    def __init__(
        self, name: str, ctx: StackContext, key: aws.kms.Key, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("modelfleet:platform:State", name, None, opts)
        self.tables = {spec.logical: self._table(ctx, spec, key) for spec in ctx.spec.tables}
        self.register_outputs({f"table_{k}": t.name for k, t in self.tables.items()})

    def _table(self, ctx: StackContext, spec: TableSpec, key: aws.kms.Key) -> aws.dynamodb.Table:
        production = ctx.cfg.production
        ttl: Any = {"attribute_name": spec.ttl_attribute, "enabled": True} if spec.ttl_attribute else None
        indexes: Any = [
            {
                "name": ix.name,
                "projection_type": "ALL",
                "key_schemas": [{"attribute_name": ix.hash_key, "key_type": "HASH"}]
                + ([{"attribute_name": ix.range_key, "key_type": "RANGE"}] if ix.range_key else []),
            }
            for ix in spec.indexes
        ]
        return aws.dynamodb.Table(
            f"table-{spec.logical}",
            name=ctx.names.table(spec.logical),
            billing_mode="PAY_PER_REQUEST",
            hash_key=spec.hash_key,
            range_key=spec.range_key,
            attributes=[{"name": a, "type": "S"} for a in spec.attributes],
            global_secondary_indexes=indexes,
            ttl=ttl,
            # Heartbeats (durable=False) are rebuilt within seconds by the nodes: no backups needed.
            point_in_time_recovery={"enabled": spec.durable},
            server_side_encryption={"enabled": True, "kms_key_arn": key.arn},
            deletion_protection_enabled=production,
            tags=ctx.tags,
            opts=child(self, protect=production),
        )
