"""`EdgeService`: a model version rolled out to a fleet of edge nodes.

The platform's edge API is landing with the edge issue; until it is wired here, every operation
says so plainly rather than doing part of the work. The resource's shape is fixed now, so stacks
can be written against it.
"""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult

from infra.provider.http import NotYetAvailable

WHY = "EdgeService is not available yet: the edge service API lands with the edge agent issue"


class EdgeServiceProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        raise NotYetAvailable(WHY)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        raise NotYetAvailable(WHY)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        raise NotYetAvailable(WHY)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        raise NotYetAvailable(WHY)


class EdgeService(Resource):
    def __init__(
        self,
        resource_name: str,
        *,
        url: pulumi.Input[str],
        api_key: pulumi.Input[str],
        service_id: str,
        model_id: pulumi.Input[str],
        node_selector: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "url": url,
            "api_key": pulumi.Output.secret(api_key),
            "service_id": service_id,
            "model_id": model_id,
            "node_selector": node_selector,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["api_key"])
        super().__init__(
            EdgeServiceProvider(), resource_name, props, pulumi.ResourceOptions.merge(secret, opts)
        )
