"""Pipelines, their deployments and executions: the records kept in DynamoDB and the request bodies
of the pipeline face (the `craft-ai-sdk` client's contract).

A pipeline is a user's Python function with declared inputs and outputs, uploaded as a source
archive. A deployment runs it on an endpoint call or a CRON schedule, in `low_latency` (warm
executor) or `elastic` (stand-by when unused) mode. Every run is an execution record.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from schemas.common import Record

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
URL_PATH_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?|[kmgt]i?|B|b)?\s*$")
_UNITS = {
    "": 1,
    "B": 1,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "KI": 1024,
    "MI": 1024**2,
    "GI": 1024**3,
    "TI": 1024**4,
}


def parse_quantity(text: str | int) -> int:
    """Bytes of a memory quantity as Kubernetes writes it (`512Mi`, `1Gi`, `2G`, `1048576`)."""
    if isinstance(text, int):
        if text <= 0:
            raise ValueError("ram_request must be positive")
        return text
    m = _QUANTITY.match(text)
    if m is None:
        raise ValueError(f"invalid ram_request {text!r}: use a quantity such as 512Mi, 1Gi or 2G")
    value = float(m.group(1)) * _UNITS[(m.group(2) or "").upper()]
    if value < 1:
        raise ValueError("ram_request must be positive")
    return int(value)


class DataType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    JSON = "json"
    ARRAY = "array"
    FILE = "file"

    def accepts(self, value: object) -> bool:
        """Whether a JSON value fits this type (None fits every type: an absent value)."""
        if value is None or self is DataType.JSON:
            return True
        if self is DataType.NUMBER:
            return isinstance(value, int | float) and not isinstance(value, bool)
        if self is DataType.STRING:
            return isinstance(value, str)
        if self is DataType.BOOLEAN:
            return isinstance(value, bool)
        if self is DataType.ARRAY:
            return isinstance(value, list)
        return isinstance(value, dict)  # a file: {"path": ...}


class PipelineStatus(StrEnum):
    CREATION_PENDING = "creation_pending"
    READY = "ready"
    CREATION_FAILED = "creation_failed"


class DeploymentMode(StrEnum):
    ELASTIC = "elastic"
    LOW_LATENCY = "low_latency"


class ExecutionRule(StrEnum):
    ENDPOINT = "endpoint"
    PERIODIC = "periodic"


class PipelineDeploymentStatus(StrEnum):
    """The client's deployment statuses (final ones: up, creation_failed, disabled, standby)."""

    CREATION_PENDING = "creation_pending"
    UP = "up"
    CREATION_FAILED = "creation_failed"
    DOWN_RETRYING = "down_retrying"
    STANDBY = "standby"
    DISABLED = "disabled"


class ExecutionStatus(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ERROR = "Error"

    @property
    def terminal(self) -> bool:
        return self in (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.ERROR)


class TriggerKind(StrEnum):
    ENDPOINT = "endpoint"
    PERIODIC = "periodic"
    MANUAL = "run"


class MappingType(StrEnum):
    ENDPOINT = "endpoint"
    CONSTANT = "constant"
    ENVIRONMENT_VARIABLE = "environment_variable"
    DATASTORE = "datastore"
    NULL = "is_null"


class Body(BaseModel):
    """A request body: unknown fields are refused (400), so callers can't set server-owned ones."""

    model_config = ConfigDict(extra="forbid")


class IoSpec(Body):
    """A declared pipeline input or output."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    data_type: DataType
    description: str | None = None
    is_required: bool | None = None
    default_value: JsonValue = None


class InputSource(Body):
    """Where a pipeline input comes from: exactly one source (none: an endpoint input of its name)."""

    pipeline_input_name: str
    endpoint_input_name: str | None = None
    constant_value: JsonValue = None
    environment_variable_name: str | None = None
    datastore_path: str | None = None
    is_null: bool | None = None
    is_required: bool | None = None
    default_value: JsonValue = None
    description: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> InputSource:
        sources = ("endpoint_input_name", "constant_value", "environment_variable_name", "datastore_path")
        given: list[str] = [n for n in sources if n in self.model_fields_set and getattr(self, n) is not None]
        if self.is_null:
            given.append("is_null")
        if len(given) > 1:
            raise ValueError(
                f"input {self.pipeline_input_name!r} maps to more than one source ({', '.join(given)})"
            )
        if self.endpoint_input_name is None and (
            self.is_required is not None or self.default_value is not None
        ):
            raise ValueError(
                f"input {self.pipeline_input_name!r}: is_required and default_value only apply to "
                "an endpoint input"
            )
        return self

    @property
    def mapping_type(self) -> MappingType:
        if self.is_null:
            return MappingType.NULL
        if self.environment_variable_name is not None:
            return MappingType.ENVIRONMENT_VARIABLE
        if self.datastore_path is not None:
            return MappingType.DATASTORE
        if "constant_value" in self.model_fields_set and self.constant_value is not None:
            return MappingType.CONSTANT
        return MappingType.ENDPOINT

    def mapping_value(self) -> dict[str, Any]:
        kind = self.mapping_type
        if kind is MappingType.ENDPOINT:
            out: dict[str, Any] = {
                "endpoint_input_name": self.endpoint_input_name or self.pipeline_input_name
            }
            if self.is_required is not None:
                out["is_required"] = self.is_required
            if self.default_value is not None:
                out["default_value"] = self.default_value
            return out
        if kind is MappingType.CONSTANT:
            return {"constant_value": self.constant_value}
        if kind is MappingType.ENVIRONMENT_VARIABLE:
            return {"environment_variable_name": self.environment_variable_name}
        if kind is MappingType.DATASTORE:
            return {"datastore_path": self.datastore_path}
        return {"is_null": True}


class OutputDestination(Body):
    pipeline_output_name: str
    endpoint_output_name: str | None = None
    datastore_path: str | None = None
    is_null: bool | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _one_destination(self) -> OutputDestination:
        given: list[str] = [
            n for n in ("endpoint_output_name", "datastore_path") if getattr(self, n) is not None
        ]
        if self.is_null:
            given.append("is_null")
        if len(given) > 1:
            raise ValueError(
                f"output {self.pipeline_output_name!r} maps to more than one destination ({', '.join(given)})"
            )
        return self

    @property
    def mapping_type(self) -> MappingType:
        if self.is_null:
            return MappingType.NULL
        if self.datastore_path is not None:
            return MappingType.DATASTORE
        return MappingType.ENDPOINT

    def mapping_value(self) -> dict[str, Any]:
        kind = self.mapping_type
        if kind is MappingType.ENDPOINT:
            return {"endpoint_output_name": self.endpoint_output_name or self.pipeline_output_name}
        if kind is MappingType.DATASTORE:
            return {"datastore_path": self.datastore_path}
        return {"is_null": True}


class PipelineRecord(Record):
    project_id: str
    name: str
    description: str | None = None
    function_path: str
    function_name: str
    inputs: list[IoSpec] = Field(default_factory=list)
    outputs: list[IoSpec] = Field(default_factory=list)
    container_config: dict[str, JsonValue] = Field(default_factory=dict)
    archive_key: str = ""
    archive_sha256: str = ""
    archive_bytes: int = 0
    requirements: list[str] = Field(default_factory=list)
    status: PipelineStatus = PipelineStatus.CREATION_PENDING
    reason: str | None = None
    created_at: datetime
    created_by: str = ""


class PipelineDeploymentRecord(Record):
    project_id: str
    name: str
    pipeline_name: str
    description: str | None = None
    mode: DeploymentMode = DeploymentMode.ELASTIC
    execution_rule: ExecutionRule
    endpoint_url_path: str | None = None
    endpoint_token_sha256: str | None = None
    schedule: str | None = None
    next_fire_at: datetime | None = None
    is_enabled: bool = True
    status: PipelineDeploymentStatus = PipelineDeploymentStatus.CREATION_PENDING
    reason: str | None = None
    enable_parallel_executions: bool = False
    max_parallel_executions_per_pod: int = 1
    ram_request: str | None = None
    ram_request_bytes: int = 0
    execution_timeout_s: int | None = None
    inputs_mapping: list[InputSource] = Field(default_factory=list)
    outputs_mapping: list[OutputDestination] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    created_by: str = ""


class ExecutionIo(Record):
    name: str
    data_type: DataType
    mapping_type: MappingType
    mapping_value: dict[str, JsonValue] = Field(default_factory=dict)
    value: JsonValue = None


class ExecutionRecord(Record):
    project_id: str
    execution_id: str
    pipeline_name: str
    deployment_name: str | None = None
    trigger: TriggerKind
    status: ExecutionStatus = ExecutionStatus.PENDING
    inputs: list[ExecutionIo] = Field(default_factory=list)
    outputs: list[ExecutionIo] = Field(default_factory=list)
    outputs_mapping: list[OutputDestination] = Field(default_factory=list)
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    attempts: int = 0
    created_by: str = ""


class DeploymentCreate(Body):
    """`POST /endpoints` and `POST /periodic-deployment`, as the client sends them."""

    pipeline_name: str = Field(pattern=NAME_PATTERN)
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    mode: DeploymentMode = DeploymentMode.ELASTIC
    enable_parallel_executions: bool = False
    max_parallel_executions_per_pod: int | None = Field(default=None, ge=1, le=256)
    ram_request: str | int | None = None
    gpu_request: int | None = Field(default=None, ge=0, le=0)
    execution_timeout_s: int | None = Field(default=None, ge=1, le=86_400)
    schedule: str | None = None
    endpoint_url_path: str | None = Field(default=None, pattern=URL_PATH_PATTERN)
    endpoint_token: str | None = Field(default=None, min_length=16, max_length=256)
    inputs_mapping: list[InputSource] | None = None
    outputs_mapping: list[OutputDestination] | None = None

    @field_validator("ram_request")
    @classmethod
    def _quantity(cls, v: str | int | None) -> str | int | None:
        if v is not None:
            parse_quantity(v)
        return v


class DeploymentUpdate(Body):
    is_enabled: bool | None = None
    schedule: str | None = None
    inputs_mapping: list[InputSource] | None = None
    outputs_mapping: list[OutputDestination] | None = None


class LogQuery(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    from_ms: int | None = Field(default=None, alias="from")
    to_ms: int | None = Field(default=None, alias="to")
    limit: int | None = Field(default=None, ge=1, le=100_000)


class RefreshBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    refresh_token: str = Field(min_length=1, max_length=1024)
