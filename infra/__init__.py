"""The Pulumi program for AWS (`pulumi up`; docs/deploy-aws.md) and the dynamic provider for
models and deployments as code (infra/provider)."""
