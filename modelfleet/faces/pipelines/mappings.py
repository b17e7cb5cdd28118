"""Inputs and outputs mappings: checked when a deployment is created or updated, and applied
when an execution is triggered. A missing required input is a 400 before any execution exists.

Each pipeline input comes from an endpoint input (the default, under its own name), a constant, an
environment variable, a data-store path, or nothing (`is_null`). An endpoint input that is not
sent takes the mapping's `default_value`, else the pipeline input's, else is refused if required
(`is_required` of the mapping, else of the pipeline input, else True) or left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from modelfleet.control.errors import InvalidRequest
from schemas.pipelines import (
    DataType,
    ExecutionIo,
    ExecutionRule,
    InputSource,
    IoSpec,
    MappingType,
    OutputDestination,
)

_MISSING = object()


def check_mappings(
    inputs: list[IoSpec],
    outputs: list[IoSpec],
    inputs_mapping: list[InputSource],
    outputs_mapping: list[OutputDestination],
    rule: ExecutionRule | None,
) -> None:
    declared_in = {i.name for i in inputs}
    declared_out = {o.name for o in outputs}
    seen: set[str] = set()
    for m in inputs_mapping:
        if m.pipeline_input_name not in declared_in:
            raise InvalidRequest(
                f"inputs_mapping names {m.pipeline_input_name!r}, which is not a pipeline input"
            )
        if m.pipeline_input_name in seen:
            raise InvalidRequest(f"input {m.pipeline_input_name!r} is mapped twice")
        seen.add(m.pipeline_input_name)
        if rule == ExecutionRule.PERIODIC and m.mapping_type == MappingType.ENDPOINT:
            raise InvalidRequest(
                f"input {m.pipeline_input_name!r}: a periodic deployment has no endpoint inputs; "
                "map it to a constant, an environment variable, a data-store path or null"
            )
    seen = set()
    for o in outputs_mapping:
        if o.pipeline_output_name not in declared_out:
            raise InvalidRequest(
                f"outputs_mapping names {o.pipeline_output_name!r}, which is not a pipeline output"
            )
        if o.pipeline_output_name in seen:
            raise InvalidRequest(f"output {o.pipeline_output_name!r} is mapped twice")
        seen.add(o.pipeline_output_name)
        if (
            rule == ExecutionRule.PERIODIC
            and o.mapping_type == MappingType.ENDPOINT
            and o.endpoint_output_name
        ):
            raise InvalidRequest(
                f"output {o.pipeline_output_name!r}: a periodic deployment has no endpoint outputs"
            )
    if rule == ExecutionRule.PERIODIC:
        mapped = {m.pipeline_input_name for m in inputs_mapping}
        for i in inputs:
            required = i.is_required if i.is_required is not None else True
            if i.name not in mapped and required and i.default_value is None:
                raise InvalidRequest(
                    f"input {i.name!r} is required: a periodic deployment must map it (no endpoint inputs)"
                )


def _from_text(spec: IoSpec, text: str) -> Any:
    """An environment variable's text as the input's type (they are strings)."""
    try:
        if spec.data_type == DataType.NUMBER:
            number = float(text)
            return int(number) if number.is_integer() and "." not in text else number
        if spec.data_type == DataType.BOOLEAN:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if spec.data_type in (DataType.JSON, DataType.ARRAY):
            return json.loads(text)
    except ValueError:
        raise InvalidRequest(
            f"input {spec.name!r}: its environment variable is not a {spec.data_type.value}",
            code="invalid_input",
        ) from None
    return text


def resolve_inputs(
    inputs: list[IoSpec],
    inputs_mapping: list[InputSource],
    given: Mapping[str, Any],
    environ: Mapping[str, str],
    rule: ExecutionRule | None,
) -> tuple[dict[str, Any], list[ExecutionIo]]:
    """The function's keyword arguments and the execution's input records; InvalidRequest (400)
    for an unknown, missing or mistyped input."""
    by_name = {m.pipeline_input_name: m for m in inputs_mapping}
    endpoint_names: set[str] = set()
    kwargs: dict[str, Any] = {}
    records: list[ExecutionIo] = []
    for spec in inputs:
        m = by_name.get(spec.name)
        if m is None:
            m = InputSource(pipeline_input_name=spec.name) if rule != ExecutionRule.PERIODIC else None
        if m is None:  # periodic and unmapped (checked optional at creation): left out
            m = InputSource(pipeline_input_name=spec.name, is_null=True)
        kind = m.mapping_type
        value: Any = None
        if kind == MappingType.ENDPOINT:
            name = m.endpoint_input_name or spec.name
            endpoint_names.add(name)
            value = given.get(name, _MISSING)
            if value is _MISSING:
                if m.default_value is not None:
                    value = m.default_value
                elif spec.default_value is not None:
                    value = spec.default_value
                else:
                    required = m.is_required if m.is_required is not None else spec.is_required
                    if required is None or required:
                        raise InvalidRequest(f"input {name!r} is required", code="missing_input")
                    value = _MISSING
        elif kind == MappingType.CONSTANT:
            value = m.constant_value
        elif kind == MappingType.ENVIRONMENT_VARIABLE:
            var = str(m.environment_variable_name)
            if var not in environ:
                raise InvalidRequest(
                    f"input {spec.name!r} maps to environment variable {var!r}, which is not set",
                    code="missing_input",
                )
            value = _from_text(spec, environ[var])
        elif kind == MappingType.DATASTORE:
            value = {"datastore_path": m.datastore_path}
        else:
            value = _MISSING
        if value is not _MISSING and kind != MappingType.DATASTORE and not spec.data_type.accepts(value):
            raise InvalidRequest(
                f"input {spec.name!r} must be of type {spec.data_type.value}, got {type(value).__name__}",
                code="invalid_input",
            )
        if value is not _MISSING and kind != MappingType.DATASTORE:
            kwargs[spec.name] = value
        records.append(
            ExecutionIo(
                name=spec.name,
                data_type=spec.data_type,
                mapping_type=kind,
                mapping_value=m.mapping_value(),
                value=None if value is _MISSING else value,
            )
        )
    unknown = sorted(set(given) - endpoint_names)
    if unknown:
        raise InvalidRequest(f"unknown input(s): {', '.join(unknown)}", code="unknown_input")
    return kwargs, records
