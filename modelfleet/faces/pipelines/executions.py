"""Executions: triggers (endpoint, endpoint token, manual run, schedule), long-polled waits,
outputs, inputs, logs."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from modelfleet.control.errors import Conflict, InvalidRequest, NotFound
from modelfleet.core import cron
from modelfleet.faces.pipelines import tokens, views
from modelfleet.faces.pipelines.base import FaceBase, new_id
from modelfleet.faces.pipelines.forms import json_field, parse_form
from modelfleet.faces.pipelines.mappings import check_mappings, resolve_inputs
from modelfleet.pipelines.engine import output_slots
from schemas.keys import Principal
from schemas.pipelines import (
    ExecutionRecord,
    ExecutionRule,
    ExecutionStatus,
    InputSource,
    OutputDestination,
    PipelineDeploymentRecord,
    PipelineDeploymentStatus,
    PipelineStatus,
    TriggerKind,
)

log = logging.getLogger(__name__)
STATUS_POLL_S = 0.1
ENDPOINT_RESULT_WAIT_S = 300.0


class ExecutionFailed(Exception):
    def __init__(self, rec: ExecutionRecord) -> None:
        super().__init__(f"the execution {rec.status.value.lower()}: {rec.error or 'no reason given'}")
        self.record = rec


class ExecutionOps(FaceBase):
    def latest_execution(
        self, who: Principal, pipeline: str | None = None, deployment: str | None = None
    ) -> dict[str, Any] | None:
        if pipeline is not None:
            self.store.require_pipeline(who.project_id, pipeline)
            found = self.store.executions_of_pipeline(who.project_id, pipeline, limit=1)
        else:
            assert deployment is not None
            self.store.require_deployment(who.project_id, deployment)
            found = self.store.executions_of_deployment(who.project_id, deployment, limit=1)
        return {"execution_id": found[0].execution_id} if found else None

    def list_executions(
        self, who: Principal, pipeline: str | None = None, deployment: str | None = None
    ) -> list[dict[str, Any]]:
        if pipeline is not None:
            self.store.require_pipeline(who.project_id, pipeline)
            found = self.store.executions_of_pipeline(who.project_id, pipeline)
        else:
            assert deployment is not None
            self.store.require_deployment(who.project_id, deployment)
            found = self.store.executions_of_deployment(who.project_id, deployment)
        return [views.execution_item(e) for e in found]

    # --- executions -------------------------------------------------------------------------------
    def trigger(
        self,
        who: Principal | None,
        d: PipelineDeploymentRecord,
        given: dict[str, Any],
        now: datetime,
        trigger: TriggerKind = TriggerKind.ENDPOINT,
    ) -> dict[str, Any]:
        if not d.is_enabled:
            raise Conflict(f"deployment {d.name!r} is disabled", code="deployment_disabled")
        if d.status == PipelineDeploymentStatus.CREATION_FAILED:
            raise Conflict(f"deployment {d.name!r} failed: {d.reason}", code="deployment_failed")
        pipe = self.store.require_pipeline(d.project_id, d.pipeline_name)
        kwargs, ios = resolve_inputs(
            pipe.inputs, d.inputs_mapping, given, self.environment(d.project_id), d.execution_rule
        )
        rec = ExecutionRecord(
            project_id=d.project_id,
            execution_id=new_id(),
            pipeline_name=pipe.name,
            deployment_name=d.name,
            trigger=trigger,
            inputs=ios,
            outputs=output_slots(d.outputs_mapping, pipe.outputs),
            outputs_mapping=d.outputs_mapping,
            created_at=now,
            created_by=who.key_id
            if who
            else ("schedule" if trigger == TriggerKind.PERIODIC else "endpoint-token"),
        )
        self.store.save_execution(rec)
        self.engine.submit(rec, kwargs, pipe, d)
        return {"execution_id": rec.execution_id}

    def trigger_by_name(
        self, who: Principal, name: str, given: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        d = self.store.require_deployment(who.project_id, name)
        if d.execution_rule != ExecutionRule.ENDPOINT:
            raise InvalidRequest(f"deployment {name!r} is periodic; it is triggered by its schedule")
        return self.trigger(who, d, given, now)

    def deployment_for_token(self, url_path: str, token: str | None) -> PipelineDeploymentRecord:
        d = self.store.deployment_by_path(url_path)
        if d is None or not tokens.endpoint_token_matches(token, d.endpoint_token_sha256):
            # the same answer for an unknown path and a wrong token: paths can't be probed
            from modelfleet.control.errors import Unauthorized

            raise Unauthorized("unknown endpoint or wrong endpoint token")
        return d

    def run_pipeline(
        self, who: Principal, name: str, content_type: str, body: bytes, now: datetime
    ) -> dict[str, Any]:
        pipe = self.store.require_pipeline(who.project_id, name)
        if pipe.status != PipelineStatus.READY:
            raise InvalidRequest(
                f"pipeline {name!r} is {pipe.status.value}, not ready", code="pipeline_not_ready"
            )
        form = parse_form(content_type, body) if body else None
        fields = dict(form.fields) if form else {}
        given = json_field(fields, "json_inputs", {})
        if not isinstance(given, dict):
            raise InvalidRequest("json_inputs must be a JSON object")
        try:
            ins = [InputSource.model_validate(m) for m in json_field(fields, "inputs_mapping", [])]
            outs = [OutputDestination.model_validate(m) for m in json_field(fields, "outputs_mapping", [])]
        except (ValueError, TypeError) as e:
            raise InvalidRequest(f"invalid mapping: {e}") from None
        check_mappings(pipe.inputs, pipe.outputs, ins, outs, None)
        kwargs, ios = resolve_inputs(pipe.inputs, ins, given, self.environment(who.project_id), None)
        rec = ExecutionRecord(
            project_id=who.project_id,
            execution_id=new_id(),
            pipeline_name=name,
            trigger=TriggerKind.MANUAL,
            inputs=ios,
            outputs=output_slots(outs, pipe.outputs),
            outputs_mapping=outs,
            created_at=now,
            created_by=who.key_id,
        )
        self.store.save_execution(rec)
        self.engine.submit(rec, kwargs, pipe, None)
        return {"execution_id": rec.execution_id}

    def wait_execution(self, project_id: str, execution_id: str, timeout: float) -> ExecutionRecord:
        """The record once it has ended, or as it is after `timeout` seconds (a long-poll)."""
        rec = self.store.require_execution(project_id, execution_id)
        if rec.status.terminal or timeout <= 0:
            return rec
        if self.engine.is_running_here(execution_id):
            self.engine.wait(execution_id, timeout)
            return self.store.require_execution(project_id, execution_id)
        deadline = time.monotonic() + timeout
        while not rec.status.terminal and time.monotonic() < deadline:
            time.sleep(STATUS_POLL_S * 2)
            rec = self.store.require_execution(project_id, execution_id)
        return rec

    def get_execution(self, who: Principal, execution_id: str, with_values: bool) -> dict[str, Any]:
        return views.execution_view(self.store.require_execution(who.project_id, execution_id), with_values)

    def outputs(self, who: Principal, execution_id: str, wait: bool) -> tuple[bool, dict[str, Any]]:
        """(done, body). Not done after the long-poll: the caller answers 307 (poll again)."""
        rec = self.wait_execution(
            who.project_id, execution_id, self.settings.long_poll_seconds if wait else 0
        )
        if not rec.status.terminal:
            return False, {"execution_id": execution_id, "status": rec.status.value}
        if rec.status != ExecutionStatus.SUCCEEDED:
            raise ExecutionFailed(rec)
        return True, {
            "execution_id": execution_id,
            "status": rec.status.value,
            "outputs": [views.io_view(o, False) for o in rec.outputs],
        }

    def output_value(self, who: Principal, execution_id: str, name: str) -> Any:
        rec = self.store.require_execution(who.project_id, execution_id)
        for o in rec.outputs:
            if o.name == name:
                return o.value
        raise NotFound("output", name)

    def input_value(self, who: Principal, execution_id: str, name: str) -> Any:
        rec = self.store.require_execution(who.project_id, execution_id)
        for i in rec.inputs:
            if i.name == name:
                return i.value
        raise NotFound("input", name)

    def endpoint_result(self, url_path: str, token: str | None, execution_id: str) -> dict[str, Any]:
        d = self.deployment_for_token(url_path, token)
        rec = self.wait_execution(d.project_id, execution_id, ENDPOINT_RESULT_WAIT_S)
        if rec.deployment_name != d.name:
            raise NotFound("execution", execution_id)
        if rec.status.terminal and rec.status != ExecutionStatus.SUCCEEDED:
            raise ExecutionFailed(rec)
        outputs = {
            str(o.mapping_value.get("endpoint_output_name") or o.name): {"value": o.value}
            for o in rec.outputs
            if o.mapping_type.value == "endpoint"
        }
        return {"execution_id": execution_id, "status": rec.status.value, "outputs": outputs}

    def execution_logs(
        self, who: Principal, execution_id: str, from_ms: int | None, to_ms: int | None, limit: int | None
    ) -> list[list[dict[str, Any]]]:
        rec = self.store.require_execution(who.project_id, execution_id)
        lines = self.engine.logs(execution_id)
        if lines is None:
            lines = self.store.load_logs(rec.project_id, execution_id) or []
        picked = []
        for line in lines:
            at = int(datetime.fromisoformat(line["timestamp"]).timestamp() * 1000)
            if (from_ms is None or at >= from_ms) and (to_ms is None or at <= to_ms):
                picked.append(line)
        if limit is not None:
            picked = picked[:limit]
        return [picked]

    def delete_execution(self, who: Principal, execution_id: str) -> dict[str, Any]:
        rec = self.store.require_execution(who.project_id, execution_id)
        if not rec.status.terminal:
            raise Conflict("the execution has not ended yet", code="execution_running")
        self.store.delete_execution(who.project_id, execution_id)
        return {"execution_id": execution_id}

    # --- schedules --------------------------------------------------------------------------------
    def fire_schedules(self) -> int:
        """Fire every periodic deployment that is due on this face's clock (injectable)."""
        now = self.clock()
        fired = 0
        for d in self.store.all_deployments():
            if d.execution_rule != ExecutionRule.PERIODIC or not d.is_enabled or not d.schedule:
                continue
            if d.next_fire_at is None or d.next_fire_at > now:
                continue
            expected = d.next_fire_at
            schedule = d.schedule
            due, nxt = cron.due_fires(schedule, expected, now)

            def advance(
                rec: PipelineDeploymentRecord, expected: datetime = expected, nxt: datetime = nxt
            ) -> PipelineDeploymentRecord | None:
                if rec.next_fire_at != expected:
                    return None  # another scheduler took these fires
                rec.next_fire_at = nxt
                return rec

            updated = self.store.update_deployment(d.project_id, d.name, advance)
            if updated is None or updated.next_fire_at != nxt:
                continue
            for _ in due:
                try:
                    self.trigger(None, updated, {}, datetime.now(UTC), TriggerKind.PERIODIC)
                    fired += 1
                except Exception:
                    log.exception("periodic deployment %s could not fire", d.name)
        return fired
