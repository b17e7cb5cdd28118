"""Where pipelines, their deployments and executions are kept: DynamoDB records (optimistic
versions, as the rest of the control plane) and S3 objects (archives, execution logs, the data
store) under fixed prefixes of the artifacts bucket."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from modelfleet.adapters.dynamo import ABSENT, DynamoStore, Write
from modelfleet.adapters.errors import ConditionFailed, ItemNotFound
from modelfleet.adapters.s3 import ArtifactStore
from modelfleet.control.errors import Conflict, NotFound
from schemas.pipelines import ExecutionRecord, PipelineDeploymentRecord, PipelineRecord

PIPELINES = "pipelines"
DEPLOYMENTS = "pipeline_deployments"
EXECUTIONS = "pipeline_executions"
ARCHIVE_PREFIX = "pipelines/archives"
LOG_PREFIX = "pipelines/logs"
DATASTORE_PREFIX = "datastore"
MAX_UPDATE_RETRIES = 20


def archive_key(project_id: str, name: str, sha256: str) -> str:
    return f"{ARCHIVE_PREFIX}/{project_id}/{name}/{sha256}.tar.gz"


def log_key(project_id: str, execution_id: str) -> str:
    return f"{LOG_PREFIX}/{project_id}/{execution_id}.json"


def datastore_key(project_id: str, path: str) -> str:
    return f"{DATASTORE_PREFIX}/{project_id}/{path}"


class PipelineStore:
    def __init__(self, db: DynamoStore, artifacts: ArtifactStore) -> None:
        self.db = db
        self.artifacts = artifacts

    # --- pipelines -------------------------------------------------------------------------------
    def get_pipeline(self, project_id: str, name: str) -> PipelineRecord | None:
        got = self.db.get(PIPELINES, {"project_id": project_id, "pipeline_name": name}, PipelineRecord)
        return got[0] if got else None

    def require_pipeline(self, project_id: str, name: str) -> PipelineRecord:
        p = self.get_pipeline(project_id, name)
        if p is None:
            raise NotFound("pipeline", name)
        return p

    def create_pipeline(self, rec: PipelineRecord) -> None:
        try:
            self.db.write(self._pipeline_write(rec, ABSENT))
        except ConditionFailed:
            raise Conflict(f"a pipeline named {rec.name!r} already exists", code="pipeline_exists") from None

    def save_pipeline(self, rec: PipelineRecord) -> None:
        self.db.write(self._pipeline_write(rec, None))

    def _pipeline_write(self, rec: PipelineRecord, expect: int | None) -> Write:
        return Write(
            PIPELINES,
            {"project_id": rec.project_id, "pipeline_name": rec.name},
            rec,
            expect_version=expect,
        )

    def list_pipelines(self, project_id: str) -> list[PipelineRecord]:
        return self.db.query(PIPELINES, "project_id", project_id, PipelineRecord)

    def delete_pipeline(self, project_id: str, name: str) -> None:
        self.db.write(Write(PIPELINES, {"project_id": project_id, "pipeline_name": name}, delete=True))

    # --- deployments ------------------------------------------------------------------------------
    def _deployment_key(self, project_id: str, name: str) -> dict[str, str]:
        return {"project_id": project_id, "name": name}

    def get_deployment_versioned(
        self, project_id: str, name: str
    ) -> tuple[PipelineDeploymentRecord, int] | None:
        return self.db.get(DEPLOYMENTS, self._deployment_key(project_id, name), PipelineDeploymentRecord)

    def get_deployment(self, project_id: str, name: str) -> PipelineDeploymentRecord | None:
        got = self.get_deployment_versioned(project_id, name)
        return got[0] if got else None

    def require_deployment(self, project_id: str, name: str) -> PipelineDeploymentRecord:
        d = self.get_deployment(project_id, name)
        if d is None:
            raise NotFound("deployment", name)
        return d

    def _deployment_write(self, rec: PipelineDeploymentRecord, version: int, expect: int | None) -> Write:
        attrs: dict[str, str | int] = {}
        if rec.endpoint_url_path:
            attrs["endpoint_url_path"] = rec.endpoint_url_path
        return Write(
            DEPLOYMENTS,
            self._deployment_key(rec.project_id, rec.name),
            rec,
            version=version,
            expect_version=expect,
            attrs=attrs,
        )

    def create_deployment(self, rec: PipelineDeploymentRecord) -> None:
        try:
            self.db.write(self._deployment_write(rec, 1, ABSENT))
        except ConditionFailed:
            raise Conflict(
                f"a deployment named {rec.name!r} already exists", code="deployment_exists"
            ) from None

    def update_deployment(
        self,
        project_id: str,
        name: str,
        change: Callable[[PipelineDeploymentRecord], PipelineDeploymentRecord | None],
    ) -> PipelineDeploymentRecord | None:
        """Read, change, write conditionally; re-read and retry when someone else wrote meanwhile.
        `change` returns None to leave the record as it is. None if the deployment is gone."""
        for _ in range(MAX_UPDATE_RETRIES):
            got = self.get_deployment_versioned(project_id, name)
            if got is None:
                return None
            rec, version = got
            new = change(rec.model_copy(deep=True))
            if new is None:
                return rec
            try:
                self.db.write(self._deployment_write(new, version + 1, version))
                return new
            except ConditionFailed:
                continue
        raise Conflict(f"deployment {name!r} is being changed concurrently; try again", code="conflict")

    def list_deployments(self, project_id: str) -> list[PipelineDeploymentRecord]:
        return self.db.query(DEPLOYMENTS, "project_id", project_id, PipelineDeploymentRecord)

    def all_deployments(self) -> list[PipelineDeploymentRecord]:
        return self.db.scan(DEPLOYMENTS, PipelineDeploymentRecord)

    def deployment_by_path(self, url_path: str) -> PipelineDeploymentRecord | None:
        found = self.db.query(
            DEPLOYMENTS, "endpoint_url_path", url_path, PipelineDeploymentRecord, index="by_endpoint_path"
        )
        return found[0] if found else None

    def delete_deployment(self, project_id: str, name: str) -> None:
        self.db.write(Write(DEPLOYMENTS, self._deployment_key(project_id, name), delete=True))

    # --- executions -----------------------------------------------------------------------------
    def save_execution(self, rec: ExecutionRecord) -> None:
        created = rec.created_at.isoformat()
        attrs: dict[str, str | int] = {
            "pipeline_key": f"{rec.project_id}/{rec.pipeline_name}",
            "created_at": f"{created}#{rec.execution_id}",
        }
        if rec.deployment_name:
            attrs["deployment_key"] = f"{rec.project_id}/{rec.deployment_name}"
        self.db.write(
            Write(
                EXECUTIONS, {"project_id": rec.project_id, "execution_id": rec.execution_id}, rec, attrs=attrs
            )
        )

    def get_execution(self, project_id: str, execution_id: str) -> ExecutionRecord | None:
        got = self.db.get(
            EXECUTIONS, {"project_id": project_id, "execution_id": execution_id}, ExecutionRecord
        )
        return got[0] if got else None

    def require_execution(self, project_id: str, execution_id: str) -> ExecutionRecord:
        e = self.get_execution(project_id, execution_id)
        if e is None:
            raise NotFound("execution", execution_id)
        return e

    def executions_of_pipeline(
        self, project_id: str, name: str, limit: int | None = None
    ) -> list[ExecutionRecord]:
        return self.db.query(
            EXECUTIONS,
            "pipeline_key",
            f"{project_id}/{name}",
            ExecutionRecord,
            index="by_pipeline",
            limit=limit,
            newest_first=True,
        )

    def executions_of_deployment(
        self, project_id: str, name: str, limit: int | None = None
    ) -> list[ExecutionRecord]:
        return self.db.query(
            EXECUTIONS,
            "deployment_key",
            f"{project_id}/{name}",
            ExecutionRecord,
            index="by_deployment",
            limit=limit,
            newest_first=True,
        )

    def unfinished_executions(self) -> list[ExecutionRecord]:
        """Pending or Running records (a scan: for start-up recovery only)."""
        return [e for e in self.db.scan(EXECUTIONS, ExecutionRecord) if not e.status.terminal]

    def delete_execution(self, project_id: str, execution_id: str) -> None:
        self.db.write(
            Write(EXECUTIONS, {"project_id": project_id, "execution_id": execution_id}, delete=True)
        )

    # --- logs -----------------------------------------------------------------------------------
    def save_logs(self, project_id: str, execution_id: str, lines: list[dict[str, Any]]) -> None:
        self.artifacts.put_bytes(log_key(project_id, execution_id), json.dumps(lines).encode())

    def load_logs(self, project_id: str, execution_id: str) -> list[dict[str, Any]] | None:
        try:
            raw = b"".join(self.artifacts.stream(log_key(project_id, execution_id)))
        except ItemNotFound:
            return None
        lines: list[dict[str, Any]] = json.loads(raw)
        return lines
