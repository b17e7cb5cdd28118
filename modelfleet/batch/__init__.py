"""Batch services: inference over S3 files, CSV rows and manifests, with exactly-once outputs
(plan -> SQS tasks -> batch workers -> deterministic output keys + conditional completion)."""
