"""`/v1/{project_id}/models`: register a model version for services (a name, a version, one
artifact inline as base64) and read models. A registered model is a `ModelRecord` of the
project like any other: models uploaded through `/api/v1/models` or `/_ml` are listed and
usable here by their `model_id`, and these are usable there."""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime
from typing import Any

from modelfleet.control.container import ControlPlane
from modelfleet.control.errors import ControlError
from modelfleet.faces.service.errors import ServiceError, bad
from schemas.models import ArtifactDeclaration, ModelCreate, ModelFormat, ModelRecord
from schemas.services import ServiceModelArtifact
from schemas.tensors import Signature

MODEL_TYPES = {
    "onnx": ModelFormat.ONNX,
    "torchscript": ModelFormat.TORCHSCRIPT,
    "pytorch": ModelFormat.TORCHSCRIPT,
}
LIST_LIMIT = 1000


def model_view(m: ModelRecord) -> dict[str, Any]:
    return {
        "model_id": m.model_id,
        "model_name": m.name,
        "model_version": m.version,
        "model_type": m.format.value,
        "model_status": {"ready": "published", "uploading": "publishing", "failed": "failed"}[m.state.value],
        "state": m.state.value,
        "description": m.description,
        "model_size": m.size_bytes,
        "create_at": int(m.created_at.timestamp() * 1000),
        "input_params": [t.model_dump(mode="json") for t in m.signature.inputs] if m.signature else [],
        "output_params": [t.model_dump(mode="json") for t in m.signature.outputs] if m.signature else [],
    }


class ServiceModels:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp

    def create(self, project_id: str, body: ServiceModelArtifact, now: datetime) -> dict[str, Any]:
        fmt = MODEL_TYPES.get(body.model_type.lower())
        if fmt is None:
            raise bad("ModelArts.3601", f"model_type must be ONNX or TorchScript, got '{body.model_type}'")
        try:
            data = base64.b64decode(body.model_artifact, validate=True)
        except (binascii.Error, ValueError):
            raise bad("ModelArts.3601", "model_artifact is not valid base64") from None
        if not data:
            raise bad("ModelArts.3601", "model_artifact is empty")
        try:
            signature = Signature.model_validate(body.signature) if body.signature is not None else None
            req = ModelCreate(
                name=body.model_name,
                version=body.model_version,
                format=fmt,
                files=[
                    ArtifactDeclaration(
                        name=body.file_name, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data)
                    )
                ],
                signature=signature,
                description=body.description,
            )
        except ValueError as e:
            raise bad("ModelArts.3601", f"invalid model: {e}".splitlines()[0][:300]) from None
        created = self.cp.models.create(project_id, req, now)
        model_id = created.model.model_id
        try:
            self.cp.models.put_artifact(project_id, model_id, body.file_name, data)
            rec = self.cp.models.commit(project_id, model_id, now)
        except ControlError as e:
            self.cp.models.delete(project_id, model_id)
            raise ServiceError(400, "ModelArts.3601", e.message) from None
        return {"model_id": rec.model_id, **model_view(rec)}

    def get(self, project_id: str, model_id: str) -> dict[str, Any]:
        m = self.cp.repo.get_model(project_id, model_id)
        if m is None:
            raise ServiceError(404, "ModelArts.3602", f"model '{model_id}' was not found")
        return model_view(m)

    def list(self, project_id: str, query: dict[str, str]) -> dict[str, Any]:
        models = self.cp.models.list_models(project_id)
        if name := query.get("model_name"):
            models = [m for m in models if name.lower() in m.name.lower()]
        if version := query.get("model_version"):
            models = [m for m in models if m.version == version]
        try:
            offset = int(query.get("offset", "0") or 0)
            limit = int(query.get("limit", str(LIST_LIMIT)) or LIST_LIMIT)
        except ValueError:
            raise bad("ModelArts.0102", "offset and limit must be integers") from None
        page = models[max(0, offset) : max(0, offset) + max(1, min(limit, LIST_LIMIT))]
        return {"total_count": len(models), "count": len(page), "models": [model_view(m) for m in page]}

    def delete(self, project_id: str, model_id: str) -> None:
        self.get(project_id, model_id)
        self.cp.models.delete(project_id, model_id)
