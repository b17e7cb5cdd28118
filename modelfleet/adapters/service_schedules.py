"""EventBridge Scheduler one-time schedules: a service's auto-stop (`schedule[{type: stop}]`).

When a service with a stop schedule starts running, a one-time schedule `at(<due time>)` in the
stack's group invokes the scheduled handler with `{"task": "services"}`, whose sweep stops every
service that is due (so a lost or early schedule changes nothing: the sweep decides from the
record). The schedule deletes itself after it fires. moto stores these but never fires them; the
local platform's scheduler runs the same sweep every `service_tick_seconds`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from modelfleet.adapters.errors import BackendUnavailable


class OneTimeSchedules:
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
            if op in ("create_schedule_group", "create_schedule") and code == "ConflictException":
                return None
            raise BackendUnavailable(f"EventBridge Scheduler {op} failed: {code or e}") from e
        except BotoCoreError as e:
            raise BackendUnavailable(f"EventBridge Scheduler {op} failed: {e}") from e

    def put(self, name: str, at: datetime, payload: dict[str, Any]) -> None:
        """Fire `payload` at the handler once, at `at` (UTC, to the second)."""
        if not self._group_ready:
            self._call("create_schedule_group", Name=self.group)
            self._group_ready = True
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
