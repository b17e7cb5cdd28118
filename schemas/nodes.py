"""Worker nodes: registration, and the sync call that is both heartbeat and desired-state pull."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from modelfleet.core.lifecycle import NodeState, RoutingState
from modelfleet.core.placement import Priority
from schemas.common import Record, RequestModel, UserId
from schemas.models import ModelFormat
from schemas.stats import InferenceStats
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
    data_url: str | None = None  # tcp://host:port of the framed data port the gateway forwards to
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
    data_url: str | None = Field(default=None, pattern=r"^tcp://[^\s/]+:\d+$", max_length=256)


class RouteReport(RequestModel):
    deployment_uid: str = Field(max_length=64)
    version_id: str = Field(max_length=64)
    routing_state: RoutingState
    current_allocations: int = Field(ge=0)
    reason: str = Field(default="", max_length=4096)
    stats: InferenceStats | None = None


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


class NlpTask(Record):
    """How text becomes model input and output becomes a result (Elasticsearch's inference_config).

    `task_type` is one of pass_through, text_embedding, text_classification, ner; `task_config` is
    the inference_config entry of that task verbatim (tokenization, classification_labels,
    num_top_classes, results_field, ...). `vocabulary_file` names the model artifact holding
    `{"vocabulary": [...], "merges": [...], "scores": [...]}`.
    """

    task_type: str
    task_config: dict[str, Any] = Field(default_factory=dict)
    field_names: list[str] = Field(default_factory=lambda: ["text_field"])
    vocabulary_file: str = "vocabulary.json"


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
    cache_size_bytes: int = 0  # per-node inference cache (0 = off)
    max_batch_size: int = 1  # dynamic batching: at most this many requests per model run (1 = off)
    max_batch_delay_ms: float = 0.0  # how long a batch may wait for more requests
    nlp: NlpTask | None = None  # set for Elasticsearch NLP models (text in, task results out)


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
