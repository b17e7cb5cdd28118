"""The platform's KMS key: tables, the artifacts bucket and the topics are encrypted with it."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra.components.base import StackContext, child


class Encryption(pulumi.ComponentResource):
    key: aws.kms.Key

    def __init__(self, name: str, ctx: StackContext, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("modelfleet:platform:Encryption", name, None, opts)
        policy = ctx.account.apply(_key_policy)
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"modelfleet {ctx.cfg.prefix}: tables, artifacts, topics",
            enable_key_rotation=True,
            deletion_window_in_days=30 if ctx.cfg.production else 7,
            policy=policy,
            tags=ctx.tags,
            opts=child(self, protect=ctx.cfg.production),
        )
        aws.kms.Alias(
            f"{name}-alias", name=f"alias/{ctx.cfg.prefix}", target_key_id=self.key.key_id, opts=child(self)
        )
        self.register_outputs({"key_arn": self.key.arn})


def _key_policy(account: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    # AWS's default: the account (and through it, IAM policies) controls the key.
                    "Sid": "KeyAdministration",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    # SNS (encrypted topics delivering) and CloudWatch (alarms publishing to the
                    # encrypted alarm topic), only for this account's resources.
                    "Sid": "KeyUseByServices",
                    "Effect": "Allow",
                    "Principal": {"Service": ["sns.amazonaws.com", "cloudwatch.amazonaws.com"]},
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                },
            ],
        },
        sort_keys=True,
    )
