"""Trained models of the `_ml` face: config, definition parts, vocabulary, get, delete.

A model is a core `ModelRecord` whose `face` keeps the trained-model config. It is `uploading`
until both its definition (reassembled from base64 parts) and its vocabulary are stored, then
`ready`. Parts are S3 objects created with a conditional write, so a duplicate part is refused
even when two arrive at once; the last part reassembles them in order, checks the declared total
length, digests the result, and stores it as the model's one artifact.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from modelfleet.adapters.dynamo import ABSENT
from modelfleet.adapters.errors import ConditionFailed, ItemNotFound
from modelfleet.control.container import ControlPlane
from modelfleet.control.nlp import VOCABULARY_FILE, nlp_task
from modelfleet.control.registry import model_event
from modelfleet.core.lifecycle import DeploymentState, ModelState, transition
from modelfleet.faces.elastic.errors import EsBadRequest, EsConflict, EsNotFound, validation_failed
from modelfleet.runtime.backends import inspect_onnx_signature
from modelfleet.runtime.errors import ModelLoadError
from modelfleet.runtime.nlp import SUPPORTED_TASKS, nlp_signature
from schemas.common import USER_ID_PATTERN
from schemas.elastic import DefinitionPart, TrainedModelPut, VocabularyPut
from schemas.models import ArtifactFile, ModelFormat, ModelRecord
from schemas.nodes import NlpTask
from schemas.tensors import Signature

FACE_KIND = "ml"
MODEL_TYPES = {"pytorch": ModelFormat.TORCHSCRIPT, "onnx": ModelFormat.ONNX}
ENTRY_FILES = {ModelFormat.TORCHSCRIPT: "model.pt", ModelFormat.ONNX: "model.onnx"}
MAX_PARTS = 10_000


def is_ml_model(rec: ModelRecord) -> bool:
    return rec.face.get("kind") == FACE_KIND


def _prefix(project_id: str, model_id: str) -> str:
    return f"projects/{project_id}/models/{model_id}"


def not_found(model_id: str) -> EsNotFound:
    return EsNotFound(f"Could not find trained model [{model_id}]")


class TrainedModels:
    def __init__(self, cp: ControlPlane) -> None:
        self._cp = cp
        self._repo = cp.repo
        self._s3 = cp.artifacts

    # --- reads --------------------------------------------------------------------------------
    def get(self, project_id: str, model_id: str) -> ModelRecord:
        rec = self._repo.get_model(project_id, model_id)
        if rec is None or not is_ml_model(rec):
            raise not_found(model_id)
        return rec

    def expand(self, project_id: str, expression: str | None, allow_no_match: bool) -> list[ModelRecord]:
        """Elasticsearch's id expressions: `_all`, `*`, comma lists, wildcards."""
        models = sorted(
            (m for m in self._repo.list_models(project_id) if is_ml_model(m)), key=lambda m: m.model_id
        )
        tokens = [t.strip() for t in (expression or "_all").split(",") if t.strip()]
        if not tokens or tokens == ["_all"]:
            return models
        chosen: dict[str, ModelRecord] = {}
        for token in tokens:
            hits = [m for m in models if fnmatch.fnmatchcase(m.model_id, token)]
            if not hits and ("*" not in token or not allow_no_match):
                raise EsNotFound(f"No known trained model with model_id [{token}]")
            chosen.update((m.model_id, m) for m in hits)
        return [chosen[k] for k in sorted(chosen)]

    # --- config -------------------------------------------------------------------------------
    def put_config(self, project_id: str, model_id: str, body: TrainedModelPut, now: datetime) -> ModelRecord:
        problems = []
        if not re.fullmatch(USER_ID_PATTERN, model_id):
            problems.append(
                f"Invalid model_id; '{model_id}' can contain lowercase alphanumeric (a-z and 0-9), "
                "hyphens or underscores; must start and end with alphanumeric"
            )
        if body.definition is not None or body.compressed_definition is not None:
            problems.append(
                "[definition] and [compressed_definition] are not accepted here; "
                "upload the definition with the definition part API"
            )
        model_type = body.model_type or "pytorch"
        if model_type not in MODEL_TYPES:
            problems.append(f"[model_type] must be one of {sorted(MODEL_TYPES)}; got [{model_type}]")
        if not body.inference_config:
            problems.append("[inference_config] must not be null.")
        elif len(body.inference_config) != 1:
            problems.append("[inference_config] must contain exactly one task type")
        else:
            task = next(iter(body.inference_config))
            if task not in SUPPORTED_TASKS:
                supported = ", ".join(SUPPORTED_TASKS)
                problems.append(f"inference_config task [{task}] is not supported; supported: {supported}")
        if body.input is None:
            problems.append("[input] must not be null.")
        if problems:
            raise validation_failed(problems)
        assert body.inference_config is not None and body.input is not None
        fmt = MODEL_TYPES[model_type]
        rec = ModelRecord(
            project_id=project_id,
            model_id=model_id,
            name=model_id,
            version="1",
            format=fmt,
            state=ModelState.UPLOADING,
            reason="waiting for the definition and vocabulary",
            entry_file=ENTRY_FILES[fmt],
            artifacts=[],
            size_bytes=body.model_size_bytes or 0,
            description=body.description or "",
            tags=body.tags,
            created_at=now,
            updated_at=now,
            face={
                "kind": FACE_KIND,
                "model_type": model_type,
                "inference_config": body.inference_config,
                "input": body.input.model_dump(),
                "metadata": body.metadata,
                "model_size_bytes": body.model_size_bytes,
                "per_deployment_memory_bytes": body.per_deployment_memory_bytes or 0,
                "per_allocation_memory_bytes": body.per_allocation_memory_bytes or 0,
                "prefix_strings": body.prefix_strings,
                "platform_architecture": body.platform_architecture,
                "definition": None,
                "vocabulary": None,
            },
        )
        try:
            self._repo.store.write(self._repo.model_write(rec, expect=ABSENT))
        except ConditionFailed:
            raise EsBadRequest(
                f"Trained machine learning model [{model_id}] already exists",
                "resource_already_exists_exception",
            ) from None
        return rec

    # --- definition parts ---------------------------------------------------------------------
    def put_part(
        self, project_id: str, model_id: str, part: int, body: DefinitionPart, now: datetime
    ) -> None:
        rec = self.get(project_id, model_id)
        problems = []
        if body.total_parts <= 0 or body.total_parts > MAX_PARTS:
            problems.append(f"[total_parts] must be greater than 0 and at most {MAX_PARTS}")
        if body.total_definition_length <= 0:
            problems.append("[total_definition_length] must be greater than 0")
        if part < 0 or part >= max(1, body.total_parts):
            problems.append(f"[part] must be less than total_parts; got part [{part}]")
        if problems:
            raise validation_failed(problems)
        if (rec.face.get("definition") or {}).get("complete"):
            raise EsConflict(
                f"the definition of trained model [{model_id}] is complete; part [{part}] already exists",
                "version_conflict_engine_exception",
            )
        try:
            data = base64.b64decode(body.definition, validate=True)
        except (binascii.Error, ValueError):
            raise EsBadRequest(
                f"definition part [{part}] of model [{model_id}] is not valid base64"
            ) from None
        if not data:
            raise EsBadRequest(f"definition part [{part}] of model [{model_id}] is empty")
        totals = {"total-parts": str(body.total_parts), "total-length": str(body.total_definition_length)}
        prefix = f"{_prefix(project_id, model_id)}/parts/"
        existing = self._s3.list_keys(prefix)
        if existing:
            seen = self._s3.head(existing[0])["metadata"]
            if seen != totals:
                raise EsBadRequest(
                    f"definition part [{part}] of model [{model_id}] declares total_parts "
                    f"[{body.total_parts}] and total_definition_length [{body.total_definition_length}], "
                    f"but earlier parts declared [{seen.get('total-parts')}] and [{seen.get('total-length')}]"
                )
        if not self._s3.put_new(f"{prefix}{part:06d}", data, totals):
            raise EsConflict(
                f"definition part [{part}] of trained model [{model_id}] already exists",
                "version_conflict_engine_exception",
            )
        keys = sorted(self._s3.list_keys(prefix))
        if len(keys) == body.total_parts:
            self._assemble(rec, keys, body.total_definition_length, now)

    def _assemble(self, rec: ModelRecord, keys: list[str], total_length: int, now: datetime) -> None:
        with tempfile.TemporaryDirectory(prefix="mf-es-def-") as tmp:
            path = Path(tmp) / rec.entry_file
            digest = hashlib.sha256()
            size = 0
            with path.open("wb") as out:
                for key in keys:
                    try:
                        for chunk in self._s3.stream(key):
                            digest.update(chunk)
                            size += len(chunk)
                            out.write(chunk)
                    except ItemNotFound:
                        return  # a concurrent assembly finished first and removed the parts
            if size != total_length:
                for key in keys:
                    self._s3.delete(key)
                raise EsBadRequest(
                    f"Model definition truncated. Unable to deserialize trained model definition "
                    f"[{rec.model_id}]: the parts hold {size} bytes, total_definition_length is "
                    f"{total_length}; upload all parts again"
                )
            signature = self._signature(rec, path)
            art = ArtifactFile(
                name=rec.entry_file,
                sha256=digest.hexdigest(),
                size_bytes=size,
                s3_key=f"{_prefix(rec.project_id, rec.model_id)}/{rec.entry_file}",
            )
            self._s3.upload_file(art.s3_key, str(path))
        self._update(
            rec.project_id,
            rec.model_id,
            now,
            lambda r: {
                "artifacts": [*(a for a in r.artifacts if a.name != art.name), art],
                "signature": signature,
                "size_bytes": size,
                "face": {**r.face, "definition": {"complete": True, "size": size, "sha256": art.sha256}},
            },
        )
        for key in keys:
            self._s3.delete(key)

    def _signature(self, rec: ModelRecord, path: Path) -> Signature:
        task = nlp_task_of(rec)
        if rec.format == ModelFormat.ONNX:
            try:
                return inspect_onnx_signature(path)
            except ModelLoadError as e:
                raise EsBadRequest(
                    f"the definition of trained model [{rec.model_id}] is not a readable ONNX model: {e}"
                ) from None
        return nlp_signature(task, rec.format)

    # --- vocabulary ---------------------------------------------------------------------------
    def put_vocabulary(self, project_id: str, model_id: str, body: VocabularyPut, now: datetime) -> None:
        rec = self.get(project_id, model_id)
        if rec.state == ModelState.READY:
            raise EsConflict(
                f"the vocabulary of trained model [{model_id}] is already stored; "
                "delete the model to change it"
            )
        data = orjson.dumps(body.model_dump(exclude_none=True))
        art = ArtifactFile(
            name=VOCABULARY_FILE,
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
            s3_key=f"{_prefix(project_id, model_id)}/{VOCABULARY_FILE}",
        )
        self._s3.put_bytes(art.s3_key, data)
        self._update(
            project_id,
            model_id,
            now,
            lambda r: {
                "artifacts": [*(a for a in r.artifacts if a.name != art.name), art],
                "face": {**r.face, "vocabulary": {"size": len(body.vocabulary)}},
            },
        )

    # --- the one write path: optimistic, and `ready` once everything is stored -----------------
    def _update(self, project_id: str, model_id: str, now: datetime, change: Any) -> ModelRecord:
        for _ in range(8):
            rec = self.get(project_id, model_id)
            fields: dict[str, Any] = change(rec)
            fields.update(updated_at=now, version_no=rec.version_no + 1)
            new = rec.model_copy(update=fields)
            events = []
            face = new.face
            if (
                rec.state == ModelState.UPLOADING
                and (face.get("definition") or {}).get("complete")
                and face.get("vocabulary")
            ):
                new = new.model_copy(update={"state": transition(rec.state, ModelState.READY), "reason": ""})
                events.append(model_event(self._cp.events, now, rec, new))
            try:
                self._repo.store.transact(
                    [self._repo.model_write(new, expect=rec.version_no), *self._cp.events.writes(events)]
                )
            except ConditionFailed:
                continue
            self._cp.events.publish(events)
            return new
        raise EsConflict(f"trained model [{model_id}] keeps changing; retry")

    # --- delete -------------------------------------------------------------------------------
    def delete(self, project_id: str, model_id: str, force: bool, now: datetime) -> None:
        rec = self.get(project_id, model_id)
        active = [
            d
            for d in self._repo.list_deployments(project_id)
            if d.state != DeploymentState.STOPPED and any(v.model_id == model_id for v in d.versions)
        ]
        if active and not force:
            raise EsConflict(
                f"Cannot delete model [{model_id}] as it is currently deployed "
                f"(deployments {sorted(d.deployment_id for d in active)}); stop them or use force"
            )
        for d in self._repo.list_deployments(project_id):
            if any(v.model_id == model_id for v in d.versions):
                self._cp.deployments.delete(project_id, d.deployment_id, now, force=True)
        for key in self._s3.list_keys(f"{_prefix(project_id, model_id)}/parts/"):
            self._s3.delete(key)
        self._cp.models.delete(project_id, rec.model_id)


def nlp_task_of(rec: ModelRecord) -> NlpTask:
    task = nlp_task(rec)
    if task is None:  # put_config refuses a model without one
        raise EsBadRequest(f"trained model [{rec.model_id}] has no inference_config")
    return task


def config_view(rec: ModelRecord) -> dict[str, Any]:
    """The TrainedModelConfig Elasticsearch returns."""
    face = rec.face
    definition = face.get("definition") or {}
    return {
        "model_id": rec.model_id,
        "model_type": face.get("model_type", "pytorch"),
        "created_by": "api_user",
        "version": "12.0.0",
        "create_time": int(rec.created_at.timestamp() * 1000),
        "model_size_bytes": definition.get("size") or face.get("model_size_bytes") or 0,
        "estimated_operations": 0,
        "license_level": "platinum",
        "description": rec.description,
        "tags": rec.tags,
        "metadata": face.get("metadata") or {},
        "input": face.get("input") or {},
        "inference_config": face.get("inference_config") or {},
        "location": {"index": {"name": ".ml-inference-native-000002"}},
        "fully_defined": rec.state == ModelState.READY,
    }
