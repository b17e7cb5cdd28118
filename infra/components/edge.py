"""What edge agents need to reach the control plane, and nothing of AWS's.

An edge agent holds the control plane's HTTPS URL and a node key (role `node`, minted through
`POST /api/v1/keys`); it never gets AWS credentials, so this component makes no IAM user, access
key or role. The URL is published as an SSM parameter for provisioning tools, and the API gives
node registration and heartbeats their own throttle (infra/components/api.py) when edge is on.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.components.base import StackContext, child


class Edge(pulumi.ComponentResource):
    control_url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        ctx: StackContext,
        api_url: pulumi.Output[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("modelfleet:platform:Edge", name, None, opts)
        self.control_url = api_url.apply(lambda u: u.rstrip("/"))
        aws.ssm.Parameter(
            "edge-control-url",
            name=f"/{ctx.cfg.prefix}/edge/control-url",
            type="String",
            value=self.control_url,
            description="the URL edge agents sync with (they authenticate with node keys)",
            tags=ctx.tags,
            opts=child(self),
        )
        self.register_outputs({"control_url": self.control_url})
