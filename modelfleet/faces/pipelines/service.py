"""The pipeline face's operations: pipelines, deployments, executions and their schedules.

Thin handlers (functions/pipelines_api) parse the request and call these; answers are the
client's shapes (views.py). Executions run on the process's engine (modelfleet.pipelines); its
events come back here as record writes (EngineBackend).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from modelfleet.adapters import aws
from modelfleet.adapters.dynamo import DynamoStore
from modelfleet.adapters.errors import ItemNotFound
from modelfleet.adapters.s3 import ArtifactStore
from modelfleet.adapters.scheduler import PipelineSchedules
from modelfleet.config import Settings
from modelfleet.control.errors import Conflict, InvalidRequest
from modelfleet.faces.pipelines import tokens, views
from modelfleet.faces.pipelines.datastore import DataStore
from modelfleet.faces.pipelines.deployments import DeploymentOps
from modelfleet.faces.pipelines.executions import ExecutionFailed, ExecutionOps
from modelfleet.faces.pipelines.forms import parse_form, unflatten
from modelfleet.faces.pipelines.settings import PipelineSettings
from modelfleet.faces.pipelines.sources import SourceRejected, check_archive
from modelfleet.faces.pipelines.store import PipelineStore, archive_key
from modelfleet.pipelines.engine import EngineBackend, PipelineEngine
from schemas.keys import Principal
from schemas.pipelines import (
    NAME_PATTERN,
    DeploymentMode,
    ExecutionRecord,
    ExecutionStatus,
    IoSpec,
    PipelineDeploymentStatus,
    PipelineRecord,
    PipelineStatus,
)

__all__ = ["ExecutionFailed", "PipelineFace", "pipeline_face"]
log = logging.getLogger(__name__)
JWT_SECRET_KEY = "pipelines/secrets/jwt-signing-key"


def scaled_clock(rate: float) -> Callable[[], datetime]:
    """Wall time, or a clock running `rate` times faster from now on (the local scheduler's
    injected clock in tests: a CRON minute per second at rate 60)."""
    if rate == 1.0:
        return lambda: datetime.now(UTC)
    origin = datetime.now(UTC)
    start = time.monotonic()
    return lambda: origin + timedelta(seconds=(time.monotonic() - start) * rate)


class PipelineFace(DeploymentOps, ExecutionOps, EngineBackend):
    def __init__(
        self, settings: Settings, psettings: PipelineSettings, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.settings = psettings
        s3 = aws.client("s3", settings)
        bucket = settings.names.bucket("artifacts", region=settings.region)
        self.artifacts = ArtifactStore(s3, bucket)
        self.store = PipelineStore(
            DynamoStore(aws.client("dynamodb", settings), settings.names), self.artifacts
        )
        self.datastore = DataStore(s3, bucket, settings.artifact_url_ttl_seconds)
        self.schedules = PipelineSchedules(
            aws.client("scheduler", settings),
            f"{settings.stack}-pipelines",
            f"arn:aws:lambda:{settings.region}:{settings.names.account}:function:{settings.stack}-scheduler",
            f"arn:aws:iam::{settings.names.account}:role/{settings.stack}-scheduler",
        )
        self.clock = clock or scaled_clock(psettings.schedule_clock_rate)
        self.engine = PipelineEngine(self, psettings.workdir, psettings.standby_after_seconds)
        self._secret: str | None = psettings.jwt_secret
        self._secret_lock = threading.Lock()
        self.node_memory_bytes = int(psutil.virtual_memory().total)
        self.started_at = datetime.now(UTC)
        self._env_cache: dict[str, tuple[dict[str, str], float]] = {}

    # --- tokens -----------------------------------------------------------------------------------
    def jwt_secret(self) -> str:
        """The per-platform signing secret: made once, kept in the artifacts bucket (conditional
        create, so every process of the platform agrees on it)."""
        with self._secret_lock:
            if self._secret is None:
                self.artifacts.put_new(JWT_SECRET_KEY, secrets.token_urlsafe(48).encode())
                self._secret = b"".join(self.artifacts.stream(JWT_SECRET_KEY)).decode()
            return self._secret

    def refresh(self, repo: Any, refresh_token: str, now: datetime) -> dict[str, str]:
        who = tokens.principal_of_api_key(repo, refresh_token, now)
        return {
            "access_token": tokens.issue(who, self.jwt_secret(), now, self.settings.token_lifetime_seconds)
        }

    # --- pipelines --------------------------------------------------------------------------------
    def create_pipeline(
        self, who: Principal, content_type: str, body: bytes, now: datetime
    ) -> dict[str, Any]:
        form = parse_form(content_type, body)
        fields = unflatten(form.fields)
        name = str(fields.get("pipeline_name") or "")
        _check_name(name, "pipeline_name")
        function_path = str(fields.get("function_path") or "")
        function_name = str(fields.get("function_name") or "")
        if not function_path or not function_name:
            raise InvalidRequest("function_path and function_name are required")
        archive = form.files.get("step_file")
        if archive is None:
            raise InvalidRequest(
                "upload the sources as a tar.gz in the 'step_file' part (container_config.local_folder); "
                "repository sources are not supported"
            )
        try:
            inputs = [IoSpec.model_validate(_clean_io(i)) for i in _as_list(fields.get("inputs"))]
            outputs = [IoSpec.model_validate(_clean_io(o)) for o in _as_list(fields.get("outputs"))]
        except ValueError as e:
            raise InvalidRequest(f"invalid inputs or outputs: {e}") from None
        if len({i.name for i in inputs}) != len(inputs) or len({o.name for o in outputs}) != len(outputs):
            raise InvalidRequest("input and output names must be unique")
        container = fields.get("container_config") or {}
        container = container if isinstance(container, dict) else {}
        requirements_path = container.get("requirements_path") or "requirements.txt"
        try:
            check = check_archive(archive, function_path, function_name, str(requirements_path))
        except SourceRejected as e:
            raise InvalidRequest(str(e), code="archive_refused") from None
        digest = hashlib.sha256(archive).hexdigest()
        rec = PipelineRecord(
            project_id=who.project_id,
            name=name,
            description=fields.get("description") or None,
            function_path=function_path,
            function_name=function_name,
            inputs=inputs,
            outputs=outputs,
            container_config={k: v for k, v in container.items() if isinstance(v, str | int | bool)},
            archive_key=archive_key(who.project_id, name, digest),
            archive_sha256=digest,
            archive_bytes=len(archive),
            created_at=now,
            created_by=who.key_id,
        )
        self.store.create_pipeline(rec)  # creation_pending
        if check.ok:
            self.artifacts.put_bytes(rec.archive_key, archive)
            rec.status, rec.requirements = PipelineStatus.READY, check.requirements
        else:
            rec.status, rec.reason = PipelineStatus.CREATION_FAILED, check.reason
        self.store.save_pipeline(rec)
        return {"pipeline_name": name, "status": rec.status.value, "reason": rec.reason}

    def get_pipeline(self, who: Principal, name: str) -> dict[str, Any]:
        return views.pipeline_view(self.store.require_pipeline(who.project_id, name))

    def list_pipelines(self, who: Principal) -> list[dict[str, Any]]:
        return [views.pipeline_item(p) for p in self.store.list_pipelines(who.project_id)]

    def pipeline_logs(self, who: Principal, name: str) -> list[dict[str, Any]]:
        p = self.store.require_pipeline(who.project_id, name)
        at = p.created_at.isoformat()
        lines = [{"timestamp": at, "message": f"pipeline {name}: {p.status.value}"}]
        if p.reason:
            lines.append({"timestamp": at, "message": p.reason})
        return lines

    def delete_pipeline(self, who: Principal, name: str, force: bool) -> dict[str, Any]:
        """The pipeline, its deployments (with force) and its archive; executions stay listed."""
        pipe = self.store.require_pipeline(who.project_id, name)
        deps = [d for d in self.store.list_deployments(who.project_id) if d.pipeline_name == name]
        if deps and not force:
            raise Conflict(
                f"pipeline {name!r} has deployments ({', '.join(d.name for d in deps)}); delete them first "
                "or pass force_deployments_deletion",
                code="pipeline_in_use",
            )
        for d in deps:
            self._remove_deployment(d)
        self.store.delete_pipeline(who.project_id, name)
        if pipe.archive_key and pipe.status == PipelineStatus.READY:
            self.artifacts.delete(pipe.archive_key)
        return {
            "pipeline": {"name": name},
            "deployments": [{"name": d.name, "execution_rule": d.execution_rule.value} for d in deps],
        }

    # --- start-up -----------------------------------------------------------------------------------
    def recover(self) -> dict[str, int]:
        """After a (re)start of this process: warm the low-latency deployments again, put elastic
        ones back to stand-by, and fail the executions the previous process was running (their
        executor processes died with it)."""
        warmed = lost = 0
        for d in self.store.all_deployments():
            if not d.is_enabled:
                continue
            pipe = self.store.get_pipeline(d.project_id, d.pipeline_name)
            if pipe is None or pipe.status != PipelineStatus.READY:
                continue
            if d.mode == DeploymentMode.LOW_LATENCY:  # `up` again once its executor is warm
                self.set_deployment_status(
                    d.project_id, d.name, PipelineDeploymentStatus.CREATION_PENDING, None
                )
                self.engine.apply_deployment(d, pipe)
                warmed += 1
            elif d.status == PipelineDeploymentStatus.UP:
                self.set_deployment_status(d.project_id, d.name, PipelineDeploymentStatus.STANDBY, None)
        for rec in self.store.unfinished_executions():
            if rec.created_at >= self.started_at or self.engine.is_running_here(rec.execution_id):
                continue  # this process's own
            rec.status, rec.error = (
                ExecutionStatus.FAILED,
                "the platform restarted before the execution ended",
            )
            rec.ended_at = datetime.now(UTC)
            self.store.save_execution(rec)
            lost += 1
        return {"warmed": warmed, "failed": lost}

    # --- EngineBackend ----------------------------------------------------------------------------
    def save_execution(self, rec: ExecutionRecord) -> None:
        self.store.save_execution(rec)

    def save_logs(self, project_id: str, execution_id: str, lines: list[dict[str, Any]]) -> None:
        self.store.save_logs(project_id, execution_id, lines)

    def fetch_archive(self, pipeline: PipelineRecord, dest: Path) -> None:
        h = hashlib.sha256()
        with open(dest, "wb") as out:
            for chunk in self.artifacts.stream(pipeline.archive_key):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != pipeline.archive_sha256:
            raise ValueError(f"the archive of pipeline {pipeline.name!r} does not match its digest")

    def put_datastore(self, project_id: str, path: str, data: bytes) -> None:
        self.datastore.put(project_id, path, data)

    def get_datastore(self, project_id: str, path: str, dest: Path) -> None:
        try:
            self.datastore.get_to_file(project_id, path, dest)
        except ItemNotFound:
            raise ValueError(f"data-store object {path!r} does not exist") from None


def _check_name(name: str, field: str) -> None:
    import re

    if not re.match(NAME_PATTERN, name):
        raise InvalidRequest(f"{field} {name!r} is invalid: letters, digits, '-' and '_', at most 63")


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, dict):  # a list sent with sparse indexes
        return [value[k] for k in sorted(value, key=lambda k: int(k) if str(k).isdigit() else 0)]
    if not isinstance(value, list):
        raise InvalidRequest("inputs and outputs must be lists")
    return [v for v in value if v is not None]


def _clean_io(item: Any) -> Any:
    if isinstance(item, dict):
        return {k: v for k, v in item.items() if v != ""}
    return item


_face: PipelineFace | None = None
_face_lock = threading.Lock()


def pipeline_face() -> PipelineFace:
    """The process's pipeline face (and its engine), made on first use."""
    global _face
    with _face_lock:
        if _face is None:
            _face = PipelineFace(Settings.from_env(), PipelineSettings.from_env())
        return _face
