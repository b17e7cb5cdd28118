"""EventBridge Scheduler, the one adapter: the schedules of periodic pipeline deployments
(`PipelineSchedules`) and one-time schedules such as a service's auto-stop (`OneTimeSchedules`).

Periodic deployments are one `cron(...)` schedule each (UTC) in the stack's schedule group, whose
target is the scheduled handler with `{"task": "pipeline_fire", ...}`. A service with a stop
schedule gets a one-time `at(<due time>)` schedule that invokes the handler with
`{"task": "services"}`, whose sweep stops every service that is due (so a lost or early schedule
changes nothing: the sweep decides from the record); it deletes itself after it fires. moto stores
schedules but never fires them, so the local platform's scheduler fires due deployments and runs
the sweep itself, from the records; this adapter keeps the cloud's view in step.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from modelfleet.adapters.errors import BackendUnavailable


class _Schedules:
    """Calls into one schedule group, created on first use; "already gone" and "already there"
    answers of the operations that tolerate them are not errors."""

    # create_schedule is tolerated only where a schedule's name makes it the same one (one-time)
    TOLERATE_EXISTING: frozenset[str] = frozenset({"create_schedule_group"})

    def __init__(self, client: Any, group: str, target_arn: str, role_arn: str) -> None:
        self._c = client
        self.group = group
        self._target_arn = target_arn
        self._role_arn = role_arn
        self._group_ready = False

    def _call(self, op: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._c, op)(**kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if op == "delete_schedule" and code == "ResourceNotFoundException":
                return None
            if op in self.TOLERATE_EXISTING and code == "ConflictException":
                return None
            raise BackendUnavailable(f"EventBridge Scheduler {op} failed: {code or e}") from e
        except BotoCoreError as e:
            raise BackendUnavailable(f"EventBridge Scheduler {op} failed: {e}") from e

    def _ensure_group(self) -> None:
        if not self._group_ready:
            self._call("create_schedule_group", Name=self.group)
            self._group_ready = True


class PipelineSchedules(_Schedules):
    @staticmethod
    def name_of(project_id: str, deployment: str) -> str:
        return f"{project_id}--{deployment}"[:64]

    def put(self, project_id: str, deployment: str, expression: str, enabled: bool) -> None:
        """Create or replace the deployment's schedule (`expression` is EventBridge's cron(...))."""
        self._ensure_group()
        args = {
            "Name": self.name_of(project_id, deployment),
            "GroupName": self.group,
            "ScheduleExpression": expression,
            "ScheduleExpressionTimezone": "UTC",
            "State": "ENABLED" if enabled else "DISABLED",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": self._target_arn,
                "RoleArn": self._role_arn,
                "Input": json.dumps(
                    {"task": "pipeline_fire", "project_id": project_id, "deployment": deployment}
                ),
            },
        }
        try:
            self._c.get_schedule(Name=args["Name"], GroupName=self.group)
            exists = True
        except ClientError:
            exists = False
        self._call("update_schedule" if exists else "create_schedule", **args)

    def get(self, project_id: str, deployment: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._c.get_schedule(
                Name=self.name_of(project_id, deployment), GroupName=self.group
            )
        except ClientError:
            return None
        return found

    def delete(self, project_id: str, deployment: str) -> None:
        self._call("delete_schedule", Name=self.name_of(project_id, deployment), GroupName=self.group)


class OneTimeSchedules(_Schedules):
    TOLERATE_EXISTING = frozenset({"create_schedule_group", "create_schedule"})

    def put(self, name: str, at: datetime, payload: dict[str, Any]) -> None:
        """Fire `payload` at the handler once, at `at` (UTC, to the second)."""
        self._ensure_group()
        self._call("delete_schedule", Name=name, GroupName=self.group)
        self._call(
            "create_schedule",
            Name=name[:64],
            GroupName=self.group,
            ScheduleExpression=f"at({at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S')})",
            ScheduleExpressionTimezone="UTC",
            FlexibleTimeWindow={"Mode": "OFF"},
            ActionAfterCompletion="DELETE",
            Target={"Arn": self._target_arn, "RoleArn": self._role_arn, "Input": json.dumps(payload)},
        )

    def delete(self, name: str) -> None:
        self._call("delete_schedule", Name=name[:64], GroupName=self.group)
