"""The Pulumi program (`pulumi up` runs it; see docs/deploy-aws.md)."""

from __future__ import annotations

import pulumi

from infra.config import StackConfig
from infra.platform import Platform

cfg = StackConfig.load()
platform = Platform("modelfleet", cfg, node_key=pulumi.Config("modelfleet").require_secret("nodeKey"))

pulumi.export("url", platform.url)
pulumi.export("events_topic", platform.notifications.topics["events"].arn)
pulumi.export("artifacts_bucket", platform.artifacts.buckets["artifacts"].bucket)
pulumi.export("node_key_secret", platform.workers.node_key.arn)
pulumi.export("functions", {k: f.name for k, f in platform.functions.functions.items()})
if platform.edge is not None:
    pulumi.export("edge_control_url", platform.edge.control_url)
