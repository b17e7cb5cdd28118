"""Edge nodes and edge services: registration tokens, node records, the desired state a node pulls,
the status it reports, edge services over many nodes and their fleet rollouts."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from modelfleet.core.fleet_rollout import NodeProgress, NodeServing, RolloutState, ServiceState
from schemas.common import Record, RequestModel, Sha256Hex
from schemas.models import ModelFormat
from schemas.tensors import Signature

# Node ids: lowercase letters, digits and '-' (IEF's node ids are uuid-shaped, e.g. the seed's
# "2r8c4fb9-t497-40u3-89yf-skui77db0472").
EdgeNodeId = Annotated[str, Field(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")]
MAX_TOKEN_LIFETIME_SECONDS = 30 * 86_400


# --- registration --------------------------------------------------------------------------------


class TokenCreate(RequestModel):
    """A one-time registration token of the caller's project. `node_id` fixes the id the node
    registering with it gets (else one is generated)."""

    name: str = Field(default="", max_length=128)
    node_id: EdgeNodeId | None = None
    expires_in_seconds: int = Field(default=3600, ge=60, le=MAX_TOKEN_LIFETIME_SECONDS)


class TokenCreated(Record):
    token_id: str
    token: str = Field(description="id:secret; shown once, good for one registration.")
    node_id: str | None
    expires_at: datetime


class RegistrationTokenRecord(Record):
    """The edge side of a registration token (the credential itself is an expiring `node` key)."""

    key_id: str
    project_id: str
    node_id: str | None = None
    name: str = ""
    created_at: datetime
    used_at: datetime | None = None
    used_by: str | None = None


class NodeResources(RequestModel):
    cpu_count: int = Field(default=1, ge=1, le=4096)
    memory_bytes: int = Field(default=0, ge=0)
    disk_free_bytes: int = Field(default=0, ge=0)
    load_1m: float = Field(default=0.0, ge=0)


class EdgeRegister(RequestModel):
    name: str = Field(default="", max_length=128)
    agent_version: str = Field(default="", max_length=64)
    resources: NodeResources | None = None


class EdgeRegistered(Record):
    node_id: str
    project_id: str
    node_key: str = Field(description="id:secret of the node's own key; shown once.")


class NodeKeyRotated(Record):
    node_id: str
    node_key: str


class EdgeNodeRecord(Record):
    project_id: str
    node_id: str
    name: str = ""
    key_id: str
    agent_version: str = ""
    registered_at: datetime
    key_rotated_at: datetime | None = None


# --- desired state -------------------------------------------------------------------------------


class ArtifactRef(Record):
    name: str
    sha256: str
    size_bytes: int
    s3_key: str


class EdgeAssignment(Record):
    """One service's model on a node."""

    service_id: str
    name: str  # the service's name; the agent serves it as /v2/models/{name}
    model_id: str
    model_version: str
    format: ModelFormat
    entry_file: str
    files: list[ArtifactRef]
    signature: Signature | None = None
    envs: dict[str, str] = Field(default_factory=dict)


class DesiredState(Record):
    project_id: str
    node_id: str
    revision: int
    assignments: list[EdgeAssignment]
    updated_at: datetime


class ArtifactLink(Record):
    name: str
    sha256: Sha256Hex
    size_bytes: int
    url: str  # presigned, time-limited


class AssignmentView(Record):
    service_id: str
    name: str
    model_id: str
    model_version: str
    format: ModelFormat
    entry_file: str
    files: list[ArtifactLink]
    signature: Signature | None = None
    envs: dict[str, str] = Field(default_factory=dict)


class DesiredStateView(Record):
    node_id: str
    revision: int
    assignments: list[AssignmentView]


# --- status reports --------------------------------------------------------------------------------


class DeploymentPhase(StrEnum):
    STARTING = "starting"
    STARTED = "started"
    FAILED = "failed"


class DeploymentReport(RequestModel):
    """A node's word on one service's model: the model it was asked for, how that went, and the
    model it actually serves (the old one after a failed activation rolled back)."""

    service_id: str = Field(max_length=64)
    model_id: str = Field(max_length=64)
    state: DeploymentPhase
    reason: str = Field(default="", max_length=4096)
    serving_model_id: str | None = Field(default=None, max_length=64)


class StatusReport(RequestModel):
    revision: int = Field(ge=0, description="The desired-state revision the node has applied.")
    resources: NodeResources | None = None
    deployments: list[DeploymentReport] = Field(default_factory=list, max_length=256)


class EdgeNodeStatus(Record):
    project_id: str
    node_id: str
    last_heartbeat: datetime
    revision: int = 0
    resources: NodeResources | None = None
    deployments: list[DeploymentReport] = Field(default_factory=list)


class EdgeNodeState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    NEVER_SEEN = "never_seen"


class EdgeNodeView(Record):
    node_id: str
    name: str
    state: EdgeNodeState
    registered_at: datetime
    last_heartbeat: datetime | None
    desired_revision: int
    applied_revision: int
    resources: NodeResources | None
    deployments: list[DeploymentReport]


class EdgeNodeList(Record):
    nodes: list[EdgeNodeView]


# --- edge services and rollouts ----------------------------------------------------------------------


class EdgeModelConfig(RequestModel):
    """One `config` entry of an edge service (the seed's ServiceConfig, edge fields)."""

    model_id: str = Field(min_length=1, max_length=64)
    nodes: list[EdgeNodeId] = Field(min_length=1, max_length=1000)
    envs: dict[str, str] = Field(default_factory=dict, max_length=64)
    specification: str = Field(default="custom", max_length=64)
    instance_count: int = Field(default=1, ge=1, le=5)
    custom_spec: dict[str, float] | None = None
    weight: int | None = Field(default=None, ge=0, le=100)


class RolloutPolicyRequest(RequestModel):
    max_unavailable: int = Field(default=1, ge=1, le=1000)
    abort_failure_percent: float = Field(default=50.0, gt=0, le=100)
    abort_min_nodes: int = Field(default=1, ge=1, le=1000)
    node_timeout_seconds: int = Field(default=300, ge=1, le=86_400)


class EdgeServiceCreate(RequestModel):
    """The seed's create-service body, edge fields (posted verbatim to the native route too)."""

    infer_type: Literal["edge"] = "edge"
    service_name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = Field(default="", max_length=100)
    config: list[EdgeModelConfig] = Field(min_length=1, max_length=16)


class EdgeServiceUpdate(RequestModel):
    """New models for the service's nodes, rolled out in waves."""

    config: list[EdgeModelConfig] = Field(min_length=1, max_length=16)
    rollout: RolloutPolicyRequest = Field(default_factory=RolloutPolicyRequest)


class EdgeServiceRecord(Record):
    project_id: str
    service_id: str
    name: str
    description: str = ""
    config: list[EdgeModelConfig]
    node_models: dict[str, str]  # node id -> the model its desired state holds now
    state: ServiceState = ServiceState.DEPLOYING
    reason: str = ""
    rollout_id: str | None = None  # the latest rollout
    stopped: bool = False  # stopped: its nodes are asked to serve nothing for it
    created_at: datetime
    updated_at: datetime
    version_no: int = 1


class RolloutEntryRecord(Record):
    node_id: str
    progress: NodeProgress
    wave: int = 0
    reason: str = ""
    since: datetime | None = None
    from_model: str | None = None
    to_model: str


class RolloutRecord(Record):
    project_id: str
    rollout_id: str
    service_id: str
    state: RolloutState
    reason: str = ""
    policy: RolloutPolicyRequest
    entries: list[RolloutEntryRecord]
    created_at: datetime
    updated_at: datetime
    version_no: int = 1


class ServiceNodeView(Record):
    node_id: str
    model_id: str
    state: NodeServing
    reason: str = ""


class EdgeServiceView(Record):
    service_id: str
    service_name: str
    infer_type: str = "edge"
    description: str
    status: ServiceState
    failed_reason: str
    config: list[EdgeModelConfig]
    nodes: list[ServiceNodeView]
    rollout: RolloutRecord | None
    stopped: bool = False
    created_at: datetime
    updated_at: datetime


class EdgeServiceList(Record):
    services: list[EdgeServiceView]


class EdgeServiceCreated(Record):
    service_id: str
    resource_ids: list[str]
