"""The model registry: register → upload (straight to S3, presigned) → commit (verify).

Commit streams every artifact from S3 once: it checks the declared sha256 and size, and reads
the ONNX signature from the file. A wrong digest is refused, the bad object is deleted, and the
model stays `uploading` so the right file can be uploaded and committed again.
"""

from __future__ import annotations

import hashlib
import tempfile
from datetime import datetime
from pathlib import Path

from modelfleet.adapters.errors import ConditionFailed, ItemNotFound
from modelfleet.adapters.s3 import ArtifactStore
from modelfleet.control.errors import Conflict, InvalidRequest, NotFound
from modelfleet.control.events import EventLog
from modelfleet.control.ids import new_model_id
from modelfleet.control.repository import Repository
from modelfleet.core.lifecycle import DeploymentState, ModelState, transition
from modelfleet.runtime.backends import inspect_onnx_signature
from modelfleet.runtime.errors import ModelLoadError
from modelfleet.runtime.torch_export_model import inspect_torch_export_signature
from schemas.events import EventType, StatusEvent
from schemas.models import (
    ArtifactFile,
    ModelCreate,
    ModelCreated,
    ModelFormat,
    ModelRecord,
    UploadTarget,
    model_view,
)
from schemas.tensors import Signature


def model_event(events: EventLog, now: datetime, before: ModelRecord, after: ModelRecord) -> StatusEvent:
    """The event of a model's state change, to write in the same transaction as the record."""
    return events.new(
        now,
        EventType.MODEL_STATE_CHANGED,
        before.project_id,
        f"model:{before.project_id}:{before.model_id}",
        from_state=before.state.value,
        to_state=after.state.value,
    )


class ModelRegistry:
    def __init__(self, repo: Repository, artifacts: ArtifactStore, events: EventLog, url_ttl: int) -> None:
        self._repo = repo
        self._artifacts = artifacts
        self._events = events
        self._url_ttl = url_ttl

    def get(self, project_id: str, model_id: str) -> ModelRecord:
        rec = self._repo.get_model(project_id, model_id)
        if rec is None:
            raise NotFound("model", model_id)
        return rec

    def list_models(self, project_id: str) -> list[ModelRecord]:
        return sorted(self._repo.list_models(project_id), key=lambda m: m.created_at)

    def create(self, project_id: str, req: ModelCreate, now: datetime) -> ModelCreated:
        model_id = req.model_id or new_model_id()
        prefix = f"projects/{project_id}/models/{model_id}"
        rec = ModelRecord(
            project_id=project_id,
            model_id=model_id,
            name=req.name,
            version=req.version,
            format=req.format,
            state=ModelState.UPLOADING,
            entry_file=req.entry_file or req.files[0].name,
            artifacts=[
                ArtifactFile(
                    name=f.name, sha256=f.sha256, size_bytes=f.size_bytes, s3_key=f"{prefix}/{f.name}"
                )
                for f in req.files
            ],
            signature=req.signature,
            size_bytes=sum(f.size_bytes for f in req.files),
            description=req.description,
            tags=req.tags,
            metadata=req.metadata,
            created_at=now,
            updated_at=now,
        )
        try:
            self._repo.store.write(self._repo.model_write(rec, expect=-1))
        except ConditionFailed:
            raise Conflict(f"model '{model_id}' already exists", code="model_exists") from None
        return ModelCreated(model=model_view(rec), uploads=self.upload_targets(rec))

    def upload_targets(self, rec: ModelRecord) -> list[UploadTarget]:
        return [
            UploadTarget(
                name=a.name,
                url=self._artifacts.presign_put(a.s3_key, self._url_ttl),
                expires_in_seconds=self._url_ttl,
            )
            for a in rec.artifacts
        ]

    def put_artifact(self, project_id: str, model_id: str, name: str, data: bytes) -> None:
        """Upload through the API (for small files and faces that carry the bytes themselves)."""
        rec = self.get(project_id, model_id)
        art = rec.artifact(name)
        if art is None:
            raise NotFound("model file", name)
        if rec.state == ModelState.READY:
            raise Conflict(
                f"model '{model_id}' is committed; its files cannot change", code="model_committed"
            )
        self._artifacts.put_bytes(art.s3_key, data)

    def commit(self, project_id: str, model_id: str, now: datetime) -> ModelRecord:
        rec = self.get(project_id, model_id)
        if rec.state == ModelState.READY:
            return rec
        with tempfile.TemporaryDirectory(prefix="mf-commit-") as tmp:
            problems = []
            for art in rec.artifacts:
                problem = self._fetch_and_verify(art, Path(tmp) / art.name)
                if problem:
                    problems.append(problem)
            if problems:
                raise InvalidRequest(
                    "; ".join(p["message"] for p in problems), code=problems[0]["code"], details=problems
                )
            signature = self._signature(rec, Path(tmp) / rec.entry_file)
        new = rec.model_copy(
            update={
                "state": transition(rec.state, ModelState.READY),
                "reason": "",
                "signature": signature,
                "updated_at": now,
                "version_no": rec.version_no + 1,
            }
        )
        ev = model_event(self._events, now, rec, new)
        try:
            self._repo.store.transact(
                [self._repo.model_write(new, expect=rec.version_no), *self._events.writes([ev])]
            )
        except ConditionFailed:
            raise Conflict(
                f"model '{model_id}' changed during commit; retry", code="concurrent_update"
            ) from None
        self._events.publish([ev])
        return new

    def _fetch_and_verify(self, art: ArtifactFile, dest: Path) -> dict[str, str] | None:
        h = hashlib.sha256()
        size = 0
        try:
            with dest.open("wb") as out:
                for chunk in self._artifacts.stream(art.s3_key):
                    h.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
        except ItemNotFound:
            return {
                "code": "artifact_missing",
                "file": art.name,
                "message": f"file '{art.name}' was not uploaded",
            }
        digest = h.hexdigest()
        if digest != art.sha256 or size != art.size_bytes:
            self._artifacts.delete(art.s3_key)
            return {
                "code": "digest_mismatch",
                "file": art.name,
                "message": (
                    f"file '{art.name}': expected sha256 {art.sha256} ({art.size_bytes} bytes), "
                    f"uploaded {digest} ({size} bytes); the upload was discarded"
                ),
            }
        return None

    def _signature(self, rec: ModelRecord, entry: Path) -> Signature | None:
        if rec.format == ModelFormat.TORCH_EXPORT and rec.signature is None:
            try:  # vets the whole archive (no torch), then reads the program's JSON signature
                return inspect_torch_export_signature(entry)
            except ModelLoadError as e:
                raise InvalidRequest(
                    f"'{rec.entry_file}' is not a usable torch.export archive: {e}", code="invalid_model_file"
                ) from None
        if rec.format != ModelFormat.ONNX:
            return rec.signature
        try:
            found = inspect_onnx_signature(entry)
        except ModelLoadError as e:
            raise InvalidRequest(
                f"'{rec.entry_file}' is not a readable ONNX model: {e}", code="invalid_model_file"
            ) from None
        if rec.signature is not None:
            declared = {t.name for t in rec.signature.inputs}
            if declared != {t.name for t in found.inputs}:
                raise InvalidRequest(
                    f"declared inputs {sorted(declared)} differ from the file's "
                    f"{[t.name for t in found.inputs]}",
                    code="signature_mismatch",
                )
            return rec.signature
        return found

    def delete(self, project_id: str, model_id: str) -> None:
        rec = self.get(project_id, model_id)
        users = [
            d.deployment_id
            for d in self._repo.list_deployments(project_id)
            if d.state != DeploymentState.STOPPED and any(v.model_id == model_id for v in d.versions)
        ]
        if users:
            raise Conflict(
                f"model '{model_id}' is used by deployments {users}; stop them first", code="model_in_use"
            )
        try:
            self._repo.store.write(self._repo.model_delete(rec))
        except ConditionFailed:
            raise Conflict(f"model '{model_id}' changed; retry", code="concurrent_update") from None
        for art in rec.artifacts:
            self._artifacts.delete(art.s3_key)
