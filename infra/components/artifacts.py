"""The artifacts bucket: model files (uploaded straight to it through presigned URLs) and batch
inputs/outputs. Versioned, KMS-encrypted, private, TLS only, with lifecycle rules."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from infra.components.base import StackContext, child


class Artifacts(pulumi.ComponentResource):
    buckets: dict[str, aws.s3.Bucket]

    def __init__(
        self, name: str, ctx: StackContext, key: aws.kms.Key, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("modelfleet:platform:Artifacts", name, None, opts)
        self.buckets = {b.logical: self._bucket(ctx, b.logical, key) for b in ctx.spec.buckets}
        self.register_outputs({f"bucket_{k}": b.bucket for k, b in self.buckets.items()})

    def _bucket(self, ctx: StackContext, logical: str, key: aws.kms.Key) -> aws.s3.Bucket:
        cfg = ctx.cfg
        bucket = aws.s3.Bucket(
            f"bucket-{logical}",
            bucket=ctx.account.apply(lambda a: ctx.names.bucket(logical, a, ctx.region)),
            force_destroy=not cfg.production,
            tags=ctx.tags,
            opts=child(self, protect=cfg.production),
        )
        opts = child(self)
        aws.s3.BucketOwnershipControls(
            f"bucket-{logical}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},  # no ACLs at all
            opts=opts,
        )
        aws.s3.BucketPublicAccessBlock(
            f"bucket-{logical}-private",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=opts,
        )
        aws.s3.BucketVersioning(
            f"bucket-{logical}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=opts,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"bucket-{logical}-encryption",
            bucket=bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": key.arn,
                    },
                    "bucket_key_enabled": True,  # one data key per object batch: fewer KMS calls
                }
            ],
            opts=opts,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"bucket-{logical}-lifecycle",
            bucket=bucket.id,
            rules=[
                {
                    # A replaced or deleted model file stays restorable this long, then goes.
                    "id": "old-model-versions",
                    "status": "Enabled",
                    "filter": {"prefix": "projects/"},
                    "noncurrent_version_expiration": {"noncurrent_days": cfg.artifact_noncurrent_days},
                },
                {
                    "id": "batch-outputs",
                    "status": "Enabled",
                    "filter": {"prefix": "batch/"},
                    "expiration": {"days": cfg.batch_output_days},
                    "noncurrent_version_expiration": {"noncurrent_days": 1},
                },
                {
                    # Uploads that were started and never finished (a client gone mid-upload).
                    "id": "abandoned-uploads",
                    "status": "Enabled",
                    "filter": {},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": 1},
                },
            ],
            opts=opts,
        )
        aws.s3.BucketPolicy(
            f"bucket-{logical}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(_tls_only),
            opts=opts,
        )
        return bucket


def _tls_only(arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    # A Deny: it takes nothing away from TLS callers, and refuses every plain-HTTP
                    # request (presigned URLs included), whoever signs it.
                    "Sid": "TlsOnly",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [arn, f"{arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        },
        sort_keys=True,
    )
