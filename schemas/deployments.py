"""Deployments: one or more weighted model versions, each with allocations x threads on nodes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from modelfleet.core.lifecycle import DeploymentState, RoutingState
from modelfleet.core.placement import Priority
from schemas.common import Record, RequestModel, UserId


class DeploymentKind(StrEnum):
    """Which face created the deployment; every face maps onto the same record."""

    NATIVE = "native"
    ML = "ml"  # Elasticsearch trained-model deployment
    SERVICE = "service"  # /v1/{project_id}/services
    PIPELINE = "pipeline"


class VersionSpec(Record):
    """One model version of a deployment: its traffic weight and its allocations."""

    version_id: str
    model_id: str
    weight: int = Field(ge=0, le=100)
    allocations: int = Field(ge=0)
    threads_per_allocation: int = Field(ge=1)
    model_bytes: int = 0
    per_deployment_memory_bytes: int = 0
    per_allocation_memory_bytes: int = 0
    cache_size_bytes: int | None = None


class DeploymentRecord(Record):
    project_id: str
    deployment_id: str
    uid: str  # globally unique; nodes and routes use it, so projects never collide
    kind: DeploymentKind = DeploymentKind.NATIVE
    state: DeploymentState
    reason: str = ""
    versions: list[VersionSpec]
    priority: Priority = Priority.NORMAL
    queue_capacity: int = 1024
    deploy_timeout_seconds: int = 300
    max_batch_size: int = 1
    max_batch_delay_ms: float = 0.0
    created_at: datetime
    updated_at: datetime
    state_since: datetime
    started_at: datetime | None = None
    version_no: int = 1  # optimistic-lock counter
    face: dict[str, object] = Field(default_factory=dict)  # face-specific settings, kept verbatim

    def version(self, version_id: str) -> VersionSpec | None:
        return next((v for v in self.versions if v.version_id == version_id), None)


class RouteRecord(Record):
    """A deployment version placed on one node: Elasticsearch's routing-table entry."""

    deployment_uid: str
    project_id: str
    deployment_id: str
    version_id: str
    node_id: str
    target_allocations: int
    current_allocations: int = 0
    routing_state: RoutingState = RoutingState.STARTING
    reason: str = ""
    updated_at: datetime

    @property
    def route_key(self) -> str:
        return route_key(self.version_id, self.node_id)


def route_key(version_id: str, node_id: str) -> str:
    return f"{version_id}#{node_id}"


DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_MAX_BATCH_DELAY_MS = 0.0


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class VersionCreate(RequestModel):
    model_id: str = Field(min_length=1, max_length=128)
    weight: int = Field(default=100, ge=0, le=100)
    allocations: int | None = Field(default=None, ge=1, le=64)


class DeploymentCreate(RequestModel):
    """Create a real-time deployment of one model, or of several weighted model versions."""

    deployment_id: UserId
    model_id: str | None = Field(default=None, min_length=1, max_length=128)
    versions: list[VersionCreate] | None = Field(default=None, min_length=1, max_length=8)
    allocations: int = Field(default=1, ge=1, le=64, description="Allocations of each version.")
    threads_per_allocation: int = Field(default=1, ge=1, le=32)
    priority: Priority = Priority.NORMAL
    queue_capacity: int = Field(default=1024, ge=1, le=1_000_000)
    deploy_timeout_seconds: int = Field(default=300, ge=1, le=86_400)
    max_batch_size: int = Field(
        default=DEFAULT_MAX_BATCH_SIZE,
        ge=1,
        le=1024,
        description="Dynamic batching: concurrent requests run together, up to this many (1 = off). "
        "Only models whose inputs have a variable first dimension are batched.",
    )
    max_batch_delay_ms: float = Field(
        default=DEFAULT_MAX_BATCH_DELAY_MS,
        ge=0,
        le=1000,
        description="How long a batch may wait for more requests. 0 batches only what is already "
        "queued, so an idle deployment adds no latency.",
    )

    @field_validator("threads_per_allocation")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if not _is_power_of_two(v):
            raise ValueError("threads_per_allocation must be a power of 2 less than or equal to 32")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> DeploymentCreate:
        if (self.model_id is None) == (self.versions is None):
            raise ValueError("give exactly one of model_id or versions")
        if self.versions is not None:
            ids = [v.model_id for v in self.versions]
            if len(set(ids)) != len(ids):
                raise ValueError("the versions of one deployment must be different models")
            if sum(v.weight for v in self.versions) != 100:
                raise ValueError("version weights must sum to 100")
        if self.priority == Priority.LOW and (self.allocations != 1 or self.threads_per_allocation != 1):
            raise ValueError("allocations and threads_per_allocation must be 1 when priority is low")
        return self


class DeploymentUpdate(RequestModel):
    """Change a deployment. `version` is the one you read: the update is refused (409) if the
    deployment changed since, so concurrent updates never overwrite each other unseen."""

    version: int = Field(ge=1)
    allocations: int = Field(ge=1, le=64, description="Allocations of each version.")


class RouteView(Record):
    version_id: str
    routing_state: RoutingState
    reason: str
    current_allocations: int
    target_allocations: int


class DeploymentView(Record):
    deployment_id: str
    version: int  # the optimistic-lock version: send it back with an update
    kind: DeploymentKind
    state: DeploymentState
    reason: str
    versions: list[VersionSpec]
    priority: Priority
    queue_capacity: int
    deploy_timeout_seconds: int
    max_batch_size: int
    max_batch_delay_ms: float
    routing_table: dict[str, list[RouteView]]  # node_id -> its routes
    inference_url: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None


class DeploymentList(Record):
    deployments: list[DeploymentView]
    next_token: str | None = None


def deployment_view(record: DeploymentRecord, routes: list[RouteRecord]) -> DeploymentView:
    table: dict[str, list[RouteView]] = {}
    for r in sorted(routes, key=lambda r: (r.node_id, r.version_id)):
        table.setdefault(r.node_id, []).append(
            RouteView(
                version_id=r.version_id,
                routing_state=r.routing_state,
                reason=r.reason,
                current_allocations=r.current_allocations,
                target_allocations=r.target_allocations,
            )
        )
    return DeploymentView(
        deployment_id=record.deployment_id,
        version=record.version_no,
        kind=record.kind,
        state=record.state,
        reason=record.reason,
        versions=record.versions,
        priority=record.priority,
        queue_capacity=record.queue_capacity,
        deploy_timeout_seconds=record.deploy_timeout_seconds,
        max_batch_size=record.max_batch_size,
        max_batch_delay_ms=record.max_batch_delay_ms,
        routing_table=table,
        inference_url=f"/v2/models/{record.deployment_id}/infer",
        created_at=record.created_at,
        updated_at=record.updated_at,
        started_at=record.started_at,
    )
