"""IAM policy documents with named actions on named resources.

`Resource: "*"` appears only where AWS offers no resource-level permission for an action. Each such
place is an entry of WILDCARD_EXCEPTIONS (its `Sid`, the actions it may cover, and why), and the
infra tests fail on any Allow statement with `*` that is not one of them, or with a wildcard action.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi


@dataclass(frozen=True)
class WildcardException:
    actions: frozenset[str]
    why: str


WILDCARD_EXCEPTIONS: dict[str, WildcardException] = {
    # X-Ray's segment APIs have no resource types.
    "XRayTraces": WildcardException(
        frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"}),
        "X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level permissions",
    ),
    # PutMetricData has no resource types; the statement is narrowed to the platform's namespace
    # by the cloudwatch:namespace condition instead.
    "PublishPlatformMetrics": WildcardException(
        frozenset({"cloudwatch:PutMetricData"}),
        "CloudWatch PutMetricData supports no resource-level permissions (a namespace condition narrows it)",
    ),
    # A function in a VPC needs its ENIs; EC2's network-interface APIs have no resource types.
    "VpcNetworkInterfaces": WildcardException(
        frozenset(
            {
                "ec2:CreateNetworkInterface",
                "ec2:DescribeNetworkInterfaces",
                "ec2:DeleteNetworkInterface",
                "ec2:AssignPrivateIpAddresses",
                "ec2:UnassignPrivateIpAddresses",
            }
        ),
        "Lambda's VPC ENI management: the EC2 Describe/Create network-interface APIs take no resource",
    ),
    # The ECR registry login has no resource; image pulls below are scoped to the repository.
    "EcrLogin": WildcardException(
        frozenset({"ecr:GetAuthorizationToken"}),
        "ECR GetAuthorizationToken is account-wide and supports no resource-level permissions",
    ),
    # In a KMS key policy, "Resource": "*" means "this key" (the only allowed form).
    "KeyAdministration": WildcardException(
        frozenset({"kms:*"}),
        "a KMS key policy's statements must name the key as '*'; this one gives the account root "
        "(and through it IAM) control of the key, as AWS's default key policy does",
    ),
    "KeyUseByServices": WildcardException(
        frozenset({"kms:GenerateDataKey", "kms:Decrypt"}),
        "a KMS key policy's statements must name the key as '*'; SNS, SQS and CloudWatch use it "
        "only for this account's resources (aws:SourceAccount)",
    ),
}


@dataclass(frozen=True)
class Statement:
    actions: tuple[str, ...]
    resources: tuple[pulumi.Input[str], ...]
    sid: str | None = None
    condition: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if "*" in self.resources:
            exception = WILDCARD_EXCEPTIONS.get(self.sid or "")
            if exception is None or not set(self.actions) <= exception.actions:
                raise ValueError(f"'*' resource for {self.actions} is not a declared exception")
        for a in self.actions:
            allowed = WILDCARD_EXCEPTIONS.get(self.sid or "")
            if "*" in a.split(":")[-1] and (allowed is None or a not in allowed.actions):
                raise ValueError(f"wildcard action {a!r} is not a declared exception")


def wildcard(sid: str, condition: dict[str, Any] | None = None) -> Statement:
    """The statement of a declared exception: its actions on `*`."""
    return Statement(tuple(sorted(WILDCARD_EXCEPTIONS[sid].actions)), ("*",), sid, condition)


def document(statements: Iterable[Statement]) -> pulumi.Output[str]:
    """An IAM policy document (JSON), resolving the resources' outputs."""
    stmts = list(statements)

    def render(resolved: Sequence[Sequence[str]]) -> str:
        body = []
        for s, resources in zip(stmts, resolved, strict=True):
            st: dict[str, Any] = {"Effect": "Allow", "Action": list(s.actions), "Resource": list(resources)}
            if s.sid:
                st["Sid"] = s.sid
            if s.condition:
                st["Condition"] = s.condition
            body.append(st)
        return json.dumps({"Version": "2012-10-17", "Statement": body}, sort_keys=True)

    return pulumi.Output.all(*[pulumi.Output.all(*s.resources) for s in stmts]).apply(render)


def assume_role(service: str, condition: dict[str, Any] | None = None) -> str:
    st: dict[str, Any] = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if condition:
        st["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [st]}, sort_keys=True)
