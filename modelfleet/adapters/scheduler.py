"""EventBridge Scheduler: the schedules of periodic pipeline deployments.

Each periodic deployment is one schedule (`cron(...)`, UTC) in the stack's schedule group, whose
target is the scheduled handler with `{"task": "pipeline_fire", ...}`. moto stores schedules but
never fires them, so the local platform's scheduler fires due deployments itself from the
records; this adapter keeps the cloud's view in step.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from modelfleet.adapters.errors import BackendUnavailable


class PipelineSchedules:
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
            if op == "create_schedule_group" and code == "ConflictException":
                return None
            raise BackendUnavailable(f"EventBridge Scheduler {op} failed: {code or e}") from e
        except BotoCoreError as e:
            raise BackendUnavailable(f"EventBridge Scheduler {op} failed: {e}") from e

    def _ensure_group(self) -> None:
        if not self._group_ready:
            self._call("create_schedule_group", Name=self.group)
            self._group_ready = True

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
