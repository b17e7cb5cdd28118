"""The whole platform as one component tree: the order below is the dependency order."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from infra.components.alarms import Alarms
from infra.components.api import Api
from infra.components.artifacts import Artifacts
from infra.components.base import StackContext
from infra.components.edge import Edge
from infra.components.encryption import Encryption
from infra.components.functions import Functions, Resources
from infra.components.network import Network
from infra.components.notifications import Notifications
from infra.components.queues import Queues
from infra.components.schedules import Schedules
from infra.components.state import State
from infra.components.workers import Workers
from infra.config import StackConfig
from infra.spec import PlatformSpec


class Platform(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cfg: StackConfig,
        node_key: pulumi.Input[str],
        code_zip: str | None = None,
        spec: PlatformSpec | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("modelfleet:platform:Platform", name, None, opts)
        account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        ctx = StackContext(cfg, account, spec or PlatformSpec())
        me = pulumi.ResourceOptions(parent=self)
        self.encryption = Encryption("encryption", ctx, me)
        key = self.encryption.key
        self.state = State("state", ctx, key, me)
        self.artifacts = Artifacts("artifacts", ctx, key, me)
        self.notifications = Notifications("notifications", ctx, key, me)
        self.queues = Queues(
            "queues", ctx, self.notifications.topics, self.notifications.delivery_failures, me
        )
        self.network = Network("network", ctx, me)
        self.functions = Functions(
            "functions",
            ctx,
            Resources(
                tables=self.state.tables,
                bucket=self.artifacts.buckets["artifacts"],
                topics=self.notifications.topics,
                queues=self.queues.queues,
                key=key,
                network=self.network,
                code_zip=code_zip or cfg.lambda_zip,
            ),
            me,
        )
        fns = self.functions.functions
        self.schedules = Schedules("schedules", ctx, fns["scheduler"], me)
        self.api = Api("api", ctx, fns, me)
        self.workers = Workers("workers", ctx, self.network, self.api.url, node_key, key, me)
        self.edge = Edge("edge", ctx, self.api.url, me) if cfg.edge_enabled else None
        dead_letter = {**self.queues.dlqs, "sns-delivery": self.notifications.delivery_failures}
        self.alarms = Alarms(
            "alarms",
            ctx,
            self.notifications.alarm_topic,
            dead_letter,
            fns,
            self.api.api,
            (self.workers.cluster, self.workers.service),
            me,
        )
        self.url = self.api.url
        self.register_outputs({"url": self.url})
