"""Records as the client reads them (field names and status strings of `craft-ai-sdk` 0.74)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from modelfleet.core import cron
from schemas.pipelines import (
    ExecutionIo,
    ExecutionRecord,
    ExecutionRule,
    PipelineDeploymentRecord,
    PipelineRecord,
)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat().replace("+00:00", "Z") if t else None


def pipeline_view(p: PipelineRecord) -> dict[str, Any]:
    return {
        "name": p.name,
        "description": p.description,
        "creation_info": {
            "created_at": _iso(p.created_at),
            "created_by": p.created_by,
            "status": p.status.value,
            "reason": p.reason,
            "archive_sha256": p.archive_sha256,
            "requirements": p.requirements,
        },
        "parameters": {
            "function_path": p.function_path,
            "function_name": p.function_name,
            "inputs": [i.model_dump(exclude_none=True) for i in p.inputs],
            "outputs": [o.model_dump(exclude_none=True) for o in p.outputs],
        },
        "container_config": p.container_config,
    }


def pipeline_item(p: PipelineRecord) -> dict[str, Any]:
    return {"pipeline_name": p.name, "created_at": _iso(p.created_at), "status": p.status.value}


def _mapping_with_types(d: PipelineDeploymentRecord, p: PipelineRecord | None) -> tuple[list[Any], list[Any]]:
    types_in = {i.name: i.data_type.value for i in (p.inputs if p else [])}
    types_out = {o.name: o.data_type.value for o in (p.outputs if p else [])}
    ins = [
        {**m.model_dump(exclude_none=True), "data_type": types_in.get(m.pipeline_input_name)}
        for m in d.inputs_mapping
    ]
    outs = [
        {**m.model_dump(exclude_none=True), "data_type": types_out.get(m.pipeline_output_name)}
        for m in d.outputs_mapping
    ]
    return ins, outs


def deployment_view(d: PipelineDeploymentRecord, p: PipelineRecord | None) -> dict[str, Any]:
    ins, outs = _mapping_with_types(d, p)
    view: dict[str, Any] = {
        "name": d.name,
        "description": d.description,
        "mode": d.mode.value,
        "execution_rule": d.execution_rule.value,
        "pipeline": {"name": d.pipeline_name},
        "inputs_mapping": ins,
        "outputs_mapping": outs,
        "created_at": _iso(d.created_at),
        "created_by": d.created_by,
        "updated_at": _iso(d.updated_at),
        "updated_by": d.created_by,
        "is_enabled": d.is_enabled,
        "status": d.status.value,
        "reason": d.reason,
        "enable_parallel_executions": d.enable_parallel_executions,
        "max_parallel_executions_per_pod": d.max_parallel_executions_per_pod,
        "ram_request": d.ram_request,
        "execution_timeout_s": d.execution_timeout_s,
        "warnings": d.warnings,
    }
    if d.execution_rule == ExecutionRule.ENDPOINT:
        view["endpoint_url_path"] = d.endpoint_url_path
    else:
        view["schedule"] = d.schedule
        view["human_readable_schedule"] = cron.human_readable(d.schedule) if d.schedule else None
        view["next_execution_at"] = _iso(d.next_fire_at)
    return view


def deployment_item(d: PipelineDeploymentRecord) -> dict[str, Any]:
    return {
        "name": d.name,
        "pipeline_name": d.pipeline_name,
        "execution_rule": d.execution_rule.value,
        "mode": d.mode.value,
        "is_enabled": d.is_enabled,
        "status": d.status.value,
        "created_at": _iso(d.created_at),
    }


def io_view(io: ExecutionIo, input_side: bool, with_value: bool = True) -> dict[str, Any]:
    key = "pipeline_input_name" if input_side else "pipeline_output_name"
    view: dict[str, Any] = {
        key: io.name,
        "data_type": io.data_type.value,
        "mapping_type": io.mapping_type.value,
        "mapping_value": dict(io.mapping_value),
    }
    view["value"] = io.value if with_value else None
    return view


def execution_view(e: ExecutionRecord, with_values: bool = True) -> dict[str, Any]:
    return {
        "execution_id": e.execution_id,
        "status": e.status.value,
        "pipeline_name": e.pipeline_name,
        "deployment_name": e.deployment_name,
        "trigger": e.trigger.value,
        "created_at": _iso(e.created_at),
        "created_by": e.created_by,
        "start_date": _iso(e.started_at),
        "end_date": _iso(e.ended_at),
        "attempts": e.attempts,
        "error": e.error,
        "inputs": [io_view(i, True, with_values) for i in e.inputs],
        "outputs": [io_view(o, False, with_values) for o in e.outputs],
    }


def execution_item(e: ExecutionRecord) -> dict[str, Any]:
    return {
        "execution_id": e.execution_id,
        "status": e.status.value,
        "pipeline_name": e.pipeline_name,
        "deployment_name": e.deployment_name,
        "trigger": e.trigger.value,
        "created_at": _iso(e.created_at),
        "start_date": _iso(e.started_at),
        "end_date": _iso(e.ended_at),
        "error": e.error,
    }
