"""EventBridge Scheduler: the platform's schedule group, the role it invokes with (allowed to
invoke exactly the scheduler function), and one recurring schedule per SCHEDULES task.

The group also holds the one-time schedules the platform makes at run time (auto-stop of a
service, periodic pipeline triggers); they target the same function through the same role.
"""

from __future__ import annotations

import json
import math

import pulumi
import pulumi_aws as aws

from infra.components.base import StackContext, child
from infra.components.functions import RUNTIME_SCHEDULE_GROUPS, scheduler_role_name
from infra.policy import Statement, assume_role, document
from modelfleet.resources import ScheduleSpec


def rate_expression(spec: ScheduleSpec) -> str:
    """Scheduler's finest rate is one minute; a faster task runs every minute and the handler
    repeats it within the invocation (`every_seconds` in the input)."""
    minutes = max(1, math.ceil(spec.every_seconds / 60))
    return f"rate({minutes} minute{'s' if minutes > 1 else ''})"


class Schedules(pulumi.ComponentResource):
    group: aws.scheduler.ScheduleGroup
    role: aws.iam.Role
    schedules: dict[str, aws.scheduler.Schedule]

    def __init__(
        self,
        name: str,
        ctx: StackContext,
        target: aws.lambda_.Function,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("modelfleet:platform:Schedules", name, None, opts)
        o = child(self)
        self.group = aws.scheduler.ScheduleGroup("schedule-group", name=ctx.cfg.prefix, tags=ctx.tags, opts=o)
        self.runtime_groups = {
            g: aws.scheduler.ScheduleGroup(
                f"schedule-group-{g}", name=f"{ctx.cfg.prefix}-{g}", tags=ctx.tags, opts=o
            )
            for g in RUNTIME_SCHEDULE_GROUPS
        }
        self.role = aws.iam.Role(
            "scheduler-role",
            name=scheduler_role_name(ctx),
            # Only EventBridge Scheduler, and only for this account's schedules.
            assume_role_policy=ctx.account.apply(
                lambda a: assume_role("scheduler.amazonaws.com", {"StringEquals": {"aws:SourceAccount": a}})
            ),
            tags=ctx.tags,
            opts=o,
        )
        aws.iam.RolePolicy(
            "scheduler-role-policy",
            role=self.role.id,
            policy=document(
                [Statement(("lambda:InvokeFunction",), (target.arn,), sid="InvokeSchedulerOnly")]
            ),
            opts=o,
        )
        self.schedules = {
            s.task: aws.scheduler.Schedule(
                f"schedule-{s.task}",
                name=f"{ctx.cfg.prefix}-{s.task}".replace("_", "-"),
                group_name=self.group.name,
                schedule_expression=rate_expression(s),
                flexible_time_window={"mode": "OFF"},
                target={
                    "arn": target.arn,
                    "role_arn": self.role.arn,
                    "input": json.dumps({"task": s.task, "every_seconds": s.every_seconds}, sort_keys=True),
                    # A tick missed is superseded by the next one: retry briefly, never pile up.
                    "retry_policy": {"maximum_event_age_in_seconds": 60, "maximum_retry_attempts": 1},
                },
                opts=o,
            )
            for s in ctx.spec.schedules
        }
        self.register_outputs({"schedule_group": self.group.name})
