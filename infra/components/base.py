"""What every component shares: the stack's settings, physical names, and the account."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from infra.config import StackConfig
from infra.spec import PlatformSpec
from modelfleet.resources import Names


@dataclass(frozen=True)
class StackContext:
    cfg: StackConfig
    account: pulumi.Output[str]
    spec: PlatformSpec = field(default_factory=PlatformSpec)

    @property
    def names(self) -> Names:
        return Names(prefix=self.cfg.prefix)

    @property
    def region(self) -> str:
        return self.cfg.region

    def arn(self, service: str, resource: str) -> pulumi.Output[str]:
        """`arn:aws:<service>:<region>:<account>:<resource>`, for resources named ahead of time."""
        return self.account.apply(lambda a: f"arn:aws:{service}:{self.region}:{a}:{resource}")

    def global_arn(self, service: str, resource: str) -> pulumi.Output[str]:
        """IAM's ARNs have no region."""
        return self.account.apply(lambda a: f"arn:aws:{service}::{a}:{resource}")

    @property
    def tags(self) -> dict[str, str]:
        return {"modelfleet:stack": self.cfg.prefix}


def child(parent: pulumi.Resource, **kwargs: object) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, **kwargs)  # type: ignore[arg-type]
