"""The model registry: a model is a set of verified artifact files plus a tensor signature."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from modelfleet.core.lifecycle import ModelState
from schemas.common import FileName, Record, RequestModel, Sha256Hex, UserId
from schemas.tensors import Signature


class ModelFormat(StrEnum):
    ONNX = "onnx"
    TORCHSCRIPT = "torchscript"
    TORCH_EXPORT = "torch_export"  # a .pt2 archive from torch.export.save


class ArtifactFile(Record):
    name: str
    sha256: str
    size_bytes: int
    s3_key: str


class ModelRecord(Record):
    """A model version as the core keeps it. Faces (native, `_ml`, services) all map onto this."""

    project_id: str
    model_id: str
    name: str
    version: str
    format: ModelFormat
    state: ModelState
    reason: str = ""
    entry_file: str
    artifacts: list[ArtifactFile]
    signature: Signature | None = None
    size_bytes: int = 0
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, str] = Field(default_factory=dict)
    created_at: datetime
    updated_at: datetime
    version_no: int = 1  # optimistic-lock counter
    # Face-specific settings kept verbatim; the `_ml` face keeps the trained-model config here
    # (model_type, inference_config, input, metadata) and its definition-upload progress.
    face: dict[str, Any] = Field(default_factory=dict)

    def artifact(self, name: str) -> ArtifactFile | None:
        return next((a for a in self.artifacts if a.name == name), None)


class ArtifactDeclaration(RequestModel):
    name: FileName
    sha256: Sha256Hex
    size_bytes: int = Field(ge=1, le=10 * 1024**3)


class ModelCreate(RequestModel):
    """Register a model: declare its files and their digests; upload them; then commit."""

    model_id: UserId | None = Field(default=None, description="Chosen id; generated when omitted.")
    name: str = Field(min_length=1, max_length=128)
    version: str = Field(default="1", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
    format: ModelFormat
    files: list[ArtifactDeclaration] = Field(min_length=1, max_length=64)
    entry_file: FileName | None = Field(
        default=None, description="The file the runtime loads; the first file by default."
    )
    signature: Signature | None = Field(
        default=None, description="Required for torchscript; read from the file for onnx and torch_export."
    )
    description: str = Field(default="", max_length=1024)
    tags: list[str] = Field(default_factory=list, max_length=32)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=64)

    @model_validator(mode="after")
    def _check(self) -> ModelCreate:
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError("file names must be unique")
        if self.entry_file is not None and self.entry_file not in names:
            raise ValueError(f"entry_file '{self.entry_file}' is not one of the declared files")
        if self.format == ModelFormat.TORCHSCRIPT and self.signature is None:
            raise ValueError("a torchscript model needs a signature (inputs and outputs)")
        return self


class UploadTarget(RequestModel):
    name: str
    method: str = "PUT"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    expires_in_seconds: int


class UploadList(Record):
    uploads: list[UploadTarget]


class ModelView(Record):
    model_id: str
    name: str
    version: str
    format: ModelFormat
    state: ModelState
    reason: str = ""
    entry_file: str
    files: list[ArtifactFile]
    signature: Signature | None
    size_bytes: int
    description: str
    tags: list[str]
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime


class ModelCreated(Record):
    model: ModelView
    uploads: list[UploadTarget]


class ModelList(Record):
    models: list[ModelView]
    next_token: str | None = None


def model_view(record: ModelRecord) -> ModelView:
    return ModelView(
        model_id=record.model_id,
        name=record.name,
        version=record.version,
        format=record.format,
        state=record.state,
        reason=record.reason,
        entry_file=record.entry_file,
        files=record.artifacts,
        signature=record.signature,
        size_bytes=record.size_bytes,
        description=record.description,
        tags=record.tags,
        metadata=record.metadata,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )
