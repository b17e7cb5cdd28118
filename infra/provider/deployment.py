"""`Deployment`: a deployment of one or more weighted model versions, of any face's kind.

`diff` asks the kind what it can change in place (allocations for native; allocations and
adaptive allocations for ml); any other change (the deployment id, its versions, threads,
priority, the platform) replaces it. The id is the user's, so a replacement deletes first.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from infra.provider.http import PlatformApi
from infra.provider.kinds import kind_of, real_sleep

INPUT_KEYS = (
    "url",
    "kind",
    "deployment_id",
    "versions",
    "allocations",
    "threads_per_allocation",
    "priority",
    "queue_capacity",
    "deploy_timeout_seconds",
    "max_batch_size",
    "max_batch_delay_ms",
    "cache_size",
    "adaptive_allocations",
    "wait_for",
    "api_key",
    "ca_file",
)
NO_CALL_KEYS = frozenset({"api_key", "ca_file"})  # recorded only: a rotated key, a new CA bundle


class DeploymentProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        with PlatformApi.of(props) as api:
            outs = kind_of(props).create(api, props, real_sleep)
        return CreateResult(id_=props["deployment_id"], outs={**props, **outs})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in INPUT_KEYS if olds.get(k) != news.get(k)]
        in_place = kind_of(news).in_place | NO_CALL_KEYS
        replaces = [k for k in changed if k not in in_place]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=bool(replaces))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        calls = [k for k in INPUT_KEYS if olds.get(k) != news.get(k) and k not in NO_CALL_KEYS]
        if not calls:
            return UpdateResult(outs={**olds, **news, "state": olds.get("state")})
        with PlatformApi.of(news) as api:
            outs = kind_of(news).update(api, olds, news, real_sleep)
        return UpdateResult(outs={**news, **outs})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        with PlatformApi.of(props) as api:
            kind_of(props).delete(api, props, real_sleep)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with PlatformApi.of(props) as api:
            found = kind_of(props).read(api, props)
        return ReadResult(id_ if found is not None else None, {**props, **(found or {})})


class Deployment(Resource):
    """Outputs: `state` (after `wait_for`), `inference_url`."""

    state: pulumi.Output[str]
    inference_url: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        url: pulumi.Input[str],
        api_key: pulumi.Input[str],
        deployment_id: str,
        versions: list[dict[str, Any]] | None = None,
        model_id: pulumi.Input[str] | None = None,
        kind: str = "native",
        allocations: int | None = None,
        threads_per_allocation: int | None = None,
        priority: str | None = None,
        queue_capacity: int | None = None,
        deploy_timeout_seconds: int | None = None,
        max_batch_size: int | None = None,
        max_batch_delay_ms: float | None = None,
        cache_size: str | None = None,
        adaptive_allocations: dict[str, Any] | None = None,
        wait_for: str = "started",
        ca_file: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        if (versions is None) == (model_id is None):
            raise ValueError("give exactly one of model_id or versions")
        props = {
            "url": url,
            "api_key": pulumi.Output.secret(api_key),
            "kind": kind,
            "deployment_id": deployment_id,
            "versions": versions if versions is not None else [{"model_id": model_id, "weight": 100}],
            "allocations": allocations,
            "threads_per_allocation": threads_per_allocation,
            "priority": priority,
            "queue_capacity": queue_capacity,
            "deploy_timeout_seconds": deploy_timeout_seconds,
            "max_batch_size": max_batch_size,
            "max_batch_delay_ms": max_batch_delay_ms,
            "cache_size": cache_size,
            "adaptive_allocations": adaptive_allocations,
            "wait_for": wait_for,
            "ca_file": ca_file,
            "state": None,
            "inference_url": None,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["api_key"])
        super().__init__(
            DeploymentProvider(), resource_name, props, pulumi.ResourceOptions.merge(secret, opts)
        )
