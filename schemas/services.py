"""The service deployment face (`/v1/{project_id}/services`, `/v1/{project_id}/models`): its
request bodies as the seed defines them, and its views.

Request models are deliberately lenient about *types* the seed's own samples bend (`weight` is
an integer or a numeric string) and strict about *names* (unknown fields are refused, so a typo
cannot hide). The rules between fields (weights summing to 100, a VPC needing its security group
and subnet, volumes needing a dedicated pool, ...) are checked by
`modelfleet.faces.service.validation`, each with its own stable error code.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.common import Record


class InferType(StrEnum):
    REAL_TIME = "real-time"
    BATCH = "batch"
    EDGE = "edge"


class TimeUnit(StrEnum):
    DAYS = "DAYS"
    HOURS = "HOURS"
    MINUTES = "MINUTES"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Schedule(_Body):
    type: str
    time_unit: str
    duration: int


class CustomSpec(_Body):
    cpu: float
    memory: int
    gpu_p4: float | None = None
    ascend_a310: int | None = None


class LogVolume(_Body):
    host_path: str
    mount_path: str


class PersistentVolume(_Body):
    name: str | None = None
    mount_path: str


class ModelAdditionalProperties(_Body):
    log_volume: list[LogVolume] | None = None
    max_surge: float | None = None
    max_unavailable: float | None = None
    termination_grace_period_seconds: int | None = None
    persistent_volumes: list[PersistentVolume] | None = None


class ServiceConfig(_Body):
    model_id: str
    specification: str
    instance_count: int
    weight: int | str | None = None
    custom_spec: CustomSpec | None = None
    envs: dict[str, str] | None = None
    deploy_timeout_in_seconds: int | None = None
    cluster_id: str | None = None
    pool_name: str | None = None
    # batch
    src_path: str | None = None
    dest_path: str | None = None
    req_uri: str | None = None
    mapping_type: str | None = None
    mapping_rule: dict[str, Any] | None = None
    src_type: str | None = None
    # edge
    nodes: list[str] | None = None
    additional_properties: ModelAdditionalProperties | None = None


class SmnNotification(_Body):
    topic_urn: str
    events: list[int]


class LtsConfiguration(_Body):
    log_group_id: str
    log_stream_id: str


class LogReportPipeline(_Body):
    type: str
    configuration: LtsConfiguration | None = None


class ServiceAdditionalProperties(_Body):
    smn_notification: SmnNotification | None = None
    log_report_channels: list[LogReportPipeline] | None = None
    websocket_upgrade: bool | None = None


class RolloutStrategy(StrEnum):
    ROLLING = "rolling"
    CANARY = "canary"  # explicit traffic steps, e.g. [10, 50, 100]
    LINEAR = "linear"  # equal steps of `step_percent`


class RolloutRequest(_Body):
    """Beyond the seed: how an update shifts traffic to the new versions (default: rolling)."""

    strategy: str = RolloutStrategy.ROLLING.value
    steps: list[int] | None = None  # canary: the new versions' traffic share at each step
    step_percent: int | None = None  # linear
    bake_seconds: float = 30.0
    max_error_rate: float = 0.05  # errors / requests of the new versions during one bake
    # the new versions' p95 latency (model run per request, on the nodes) over one bake
    max_p95_latency_ms: float | None = None
    # the earlier name of `max_p95_latency_ms`, still accepted (it meant the mean; it is now judged
    # as the p95); giving both with different values is refused
    max_latency_ms: float | None = None
    min_requests: int = 1  # a bake with fewer requests to the new versions is not judged yet


class ServiceCreate(_Body):
    service_name: str
    infer_type: str
    config: list[ServiceConfig]
    workspace_id: str | None = None
    schedule: list[Schedule] | None = None
    cluster_id: str | None = None
    pool_name: str | None = None
    vpc_id: str | None = None
    description: str | None = None
    security_group_id: str | None = None
    subnet_network_id: str | None = None
    additional_properties: ServiceAdditionalProperties | None = None


class ServiceUpdate(_Body):
    """PUT: the fields that may change. A new `config` is a rolling upgrade (or `rollout`)."""

    description: str | None = None
    config: list[ServiceConfig] | None = None
    schedule: list[Schedule] | None = None
    additional_properties: ServiceAdditionalProperties | None = None
    status: str | None = None  # "running" starts, "stopped" stops (ModelArts' update-status)
    rollout: RolloutRequest | None = None


class ServiceCreated(Record):
    service_id: str
    resource_ids: list[str]


class ServiceModelArtifact(_Body):
    """POST /v1/{project_id}/models: one model version, its file inline (base64)."""

    model_name: str = Field(min_length=1, max_length=64)
    model_version: str = Field(
        default="1.0.0", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"
    )
    model_type: str = "ONNX"
    model_artifact: str = Field(min_length=1, description="the model file, base64")
    file_name: str = Field(default="model.onnx", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    description: str = Field(default="", max_length=100)
    signature: dict[str, Any] | None = None  # required for TorchScript
