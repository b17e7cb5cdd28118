"""Worker nodes: registration, and the sync call that is both heartbeat and desired-state pull."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from modelfleet.core.lifecycle import NodeState, RoutingState
from modelfleet.core.placement import Priority
from schemas.common import Record, RequestModel, UserId
from schemas.models import ModelFormat
from schemas.tensors import Signature


class NodeKind(StrEnum):
    CLOUD = "cloud"
    EDGE = "edge"


class NodeRecord(Record):
    node_id: str
    kind: NodeKind
    processors: int
    memory_bytes: int
    url: str
    state: NodeState
    pool: str | None = None
    project_id: str | None = None  # edge nodes belong to a project; cloud nodes serve all
    registered_at: datetime
    updated_at: datetime
    version_no: int = 1


class NodeRegister(RequestModel):
    node_id: UserId
    kind: NodeKind = NodeKind.CLOUD
    processors: int = Field(ge=1, le=1024)
    memory_bytes: int = Field(ge=64 * 1024**2)
    url: str = Field(pattern=r"^https?://[^\s/]+(:\d+)?/?$", max_length=256)
    pool: str | None = Field(default=None, max_length=64)


class RouteReport(RequestModel):
    deployment_uid: str = Field(max_length=64)
    version_id: str = Field(max_length=64)
    routing_state: RoutingState
    current_allocations: int = Field(ge=0)
    reason: str = Field(default="", max_length=4096)


class NodeSync(RequestModel):
    """Heartbeat: the node's actual routes. The answer is its desired assignments."""

    routes: list[RouteReport] = Field(default_factory=list, max_length=4096)
    rss_bytes: int | None = Field(default=None, ge=0)


class ArtifactSource(Record):
    name: str
    sha256: str
    size_bytes: int
    url: str  # presigned GET


class AssignedModel(Record):
    model_id: str
    format: ModelFormat
    entry_file: str
    signature: Signature | None
    files: list[ArtifactSource]


class Assignment(Record):
    deployment_uid: str
    project_id: str
    deployment_id: str
    version_id: str
    target_allocations: int
    threads_per_allocation: int
    priority: Priority
    queue_capacity: int
    model: AssignedModel


class SyncResponse(Record):
    node_id: str
    state: NodeState
    heartbeat_interval_seconds: float
    assignments: list[Assignment]


class NodeView(Record):
    node_id: str
    kind: NodeKind
    processors: int
    memory_bytes: int
    url: str
    state: NodeState
    pool: str | None
    last_heartbeat: datetime | None
    registered_at: datetime


class NodeList(Record):
    nodes: list[NodeView]
