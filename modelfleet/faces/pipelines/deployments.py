"""Pipeline deployments: endpoint and periodic, low-latency and elastic; their admission against
the node's memory, updates, deletion and endpoint tokens."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from modelfleet.control.errors import Conflict, InvalidRequest, NotFound
from modelfleet.core import cron
from modelfleet.faces.pipelines import tokens, views
from modelfleet.faces.pipelines.base import FaceBase, valid_cron
from modelfleet.faces.pipelines.mappings import check_mappings
from schemas.keys import Principal
from schemas.pipelines import (
    DeploymentCreate,
    DeploymentMode,
    DeploymentUpdate,
    ExecutionRule,
    PipelineDeploymentRecord,
    PipelineDeploymentStatus,
    PipelineStatus,
    parse_quantity,
)

STATUS_POLL_S = 0.1


class DeploymentOps(FaceBase):
    def create_deployment(
        self, who: Principal, req: DeploymentCreate, rule: ExecutionRule, now: datetime
    ) -> dict[str, Any]:
        pipe = self.store.require_pipeline(who.project_id, req.pipeline_name)
        if pipe.status != PipelineStatus.READY:
            raise InvalidRequest(
                f"pipeline {pipe.name!r} is {pipe.status.value}, not ready", code="pipeline_not_ready"
            )
        inputs_mapping = req.inputs_mapping or []
        outputs_mapping = req.outputs_mapping or []
        check_mappings(pipe.inputs, pipe.outputs, inputs_mapping, outputs_mapping, rule)
        token: str | None = None
        path: str | None = None
        schedule: str | None = None
        next_fire: datetime | None = None
        if rule == ExecutionRule.ENDPOINT:
            if req.schedule is not None:
                raise InvalidRequest("schedule only applies to a periodic deployment")
            path = req.endpoint_url_path or req.name
            if self.store.deployment_by_path(path) is not None:
                raise Conflict(f"endpoint path {path!r} is taken", code="endpoint_path_taken")
            token = req.endpoint_token or tokens.new_endpoint_token()
        else:
            if req.endpoint_url_path is not None or req.endpoint_token is not None:
                raise InvalidRequest(
                    "endpoint_url_path and endpoint_token only apply to an endpoint deployment"
                )
            if not req.schedule:
                raise InvalidRequest("a periodic deployment needs a schedule (CRON)")
            schedule = valid_cron(req.schedule)
            next_fire = cron.next_after(schedule, self.clock())
        ram_bytes = parse_quantity(req.ram_request) if req.ram_request is not None else 0
        warnings = self._admission(who.project_id, ram_bytes)
        parallel = req.enable_parallel_executions
        rec = PipelineDeploymentRecord(
            project_id=who.project_id,
            name=req.name,
            pipeline_name=pipe.name,
            description=req.description,
            mode=req.mode,
            execution_rule=rule,
            endpoint_url_path=path,
            endpoint_token_sha256=tokens.hash_endpoint_token(token) if token else None,
            schedule=schedule,
            next_fire_at=next_fire,
            status=PipelineDeploymentStatus.CREATION_PENDING
            if req.mode == DeploymentMode.LOW_LATENCY
            else PipelineDeploymentStatus.STANDBY,
            enable_parallel_executions=parallel,
            max_parallel_executions_per_pod=(req.max_parallel_executions_per_pod or 1) if parallel else 1,
            ram_request=str(req.ram_request) if req.ram_request is not None else None,
            ram_request_bytes=ram_bytes,
            execution_timeout_s=req.execution_timeout_s,
            inputs_mapping=inputs_mapping,
            outputs_mapping=outputs_mapping,
            warnings=warnings,
            created_at=now,
            updated_at=now,
            created_by=who.key_id,
        )
        self.store.create_deployment(rec)
        if schedule is not None:
            self.schedules.put(who.project_id, rec.name, cron.to_eventbridge(schedule), True)
        if rec.mode == DeploymentMode.LOW_LATENCY:
            self.engine.apply_deployment(rec, pipe)
        out: dict[str, Any] = {"name": rec.name, "execution_rule": rule.value, "warnings": warnings}
        if token is not None:
            out["endpoint_token"] = token  # shown once; only its hash is kept
            out["endpoint_url_path"] = path
        return out

    def _admission(self, project_id: str, ram_bytes: int) -> list[str]:
        """ram_request against the node's memory: over it is refused; the sum of all deployments'
        requests over it is accepted with a warning (the seed's rule)."""
        total = self.node_memory_bytes
        if ram_bytes > total:
            raise InvalidRequest(
                f"ram_request of {ram_bytes} bytes is more than the node's memory ({total} bytes)",
                code="ram_request_too_large",
            )
        committed = sum(d.ram_request_bytes for d in self.store.all_deployments() if d.is_enabled)
        if ram_bytes and committed + ram_bytes > total:
            wanted = (committed + ram_bytes) / 2**20
            return [
                f"the deployments' RAM requests add up to {wanted:.0f} MiB, over the node's "
                f"{total / 2**20:.0f} MiB: executions may fail if they all run at once"
            ]
        return []

    def get_deployment(self, who: Principal, name: str, wait: bool) -> dict[str, Any]:
        d = self.store.require_deployment(who.project_id, name)
        if wait:
            deadline = time.monotonic() + self.settings.long_poll_seconds
            while d.status in (
                PipelineDeploymentStatus.CREATION_PENDING,
                PipelineDeploymentStatus.DOWN_RETRYING,
            ):
                if time.monotonic() >= deadline:
                    break
                time.sleep(STATUS_POLL_S)
                d = self.store.require_deployment(who.project_id, name)
        return views.deployment_view(d, self.store.get_pipeline(who.project_id, d.pipeline_name))

    def list_deployments(self, who: Principal) -> list[dict[str, Any]]:
        return [views.deployment_item(d) for d in self.store.list_deployments(who.project_id)]

    def update_deployment(
        self, who: Principal, name: str, req: DeploymentUpdate, now: datetime
    ) -> dict[str, Any]:
        current = self.store.require_deployment(who.project_id, name)
        pipe = self.store.require_pipeline(who.project_id, current.pipeline_name)
        schedule = None
        if req.schedule is not None:
            if current.execution_rule != ExecutionRule.PERIODIC:
                raise InvalidRequest("schedule only applies to a periodic deployment")
            schedule = valid_cron(req.schedule)
        check_mappings(
            pipe.inputs,
            pipe.outputs,
            req.inputs_mapping if req.inputs_mapping is not None else current.inputs_mapping,
            req.outputs_mapping if req.outputs_mapping is not None else current.outputs_mapping,
            current.execution_rule,
        )
        clock_now = self.clock()

        def change(d: PipelineDeploymentRecord) -> PipelineDeploymentRecord:
            if req.is_enabled is not None:
                d.is_enabled = req.is_enabled
            if schedule is not None:
                d.schedule = schedule
            if d.schedule and (schedule is not None or req.is_enabled):
                d.next_fire_at = cron.next_after(d.schedule, clock_now)
            if req.inputs_mapping is not None:
                d.inputs_mapping = req.inputs_mapping
            if req.outputs_mapping is not None:
                d.outputs_mapping = req.outputs_mapping
            if not d.is_enabled:
                d.status = PipelineDeploymentStatus.DISABLED
            elif d.mode == DeploymentMode.LOW_LATENCY:
                d.status = PipelineDeploymentStatus.CREATION_PENDING
            else:
                d.status = PipelineDeploymentStatus.STANDBY
            d.updated_at = now
            return d

        new = self.store.update_deployment(who.project_id, name, change)
        if new is None:
            raise NotFound("deployment", name)
        if new.schedule:
            self.schedules.put(who.project_id, name, cron.to_eventbridge(new.schedule), new.is_enabled)
        if not new.is_enabled:
            self.engine.remove_deployment(who.project_id, name)
        elif new.mode == DeploymentMode.LOW_LATENCY:
            runner = self.engine.apply_deployment(new, pipe)
            if runner.state.value == "up":
                self.set_deployment_status(who.project_id, name, PipelineDeploymentStatus.UP, None)
        return {"name": name}

    def _remove_deployment(self, d: PipelineDeploymentRecord) -> None:
        self.engine.remove_deployment(d.project_id, d.name)
        if d.execution_rule == ExecutionRule.PERIODIC:
            self.schedules.delete(d.project_id, d.name)
        self.store.delete_deployment(d.project_id, d.name)

    def delete_deployment(self, who: Principal, name: str) -> dict[str, Any]:
        d = self.store.require_deployment(who.project_id, name)
        self._remove_deployment(d)
        return {"name": name, "execution_rule": d.execution_rule.value}

    def new_endpoint_token(self, who: Principal, name: str, token: str | None) -> dict[str, Any]:
        d = self.store.require_deployment(who.project_id, name)
        if d.execution_rule != ExecutionRule.ENDPOINT:
            raise InvalidRequest(f"deployment {name!r} is not an endpoint")
        if token is not None and not 16 <= len(token) <= 256:
            raise InvalidRequest("an endpoint token has 16 to 256 characters")
        new = token or tokens.new_endpoint_token()

        def change(rec: PipelineDeploymentRecord) -> PipelineDeploymentRecord:
            rec.endpoint_token_sha256 = tokens.hash_endpoint_token(new)
            return rec

        self.store.update_deployment(who.project_id, name, change)
        return {"endpoint_token": new}
