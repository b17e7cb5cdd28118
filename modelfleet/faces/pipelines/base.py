"""What the pipeline face's operations share: storage, the engine, the clock, and the project's
environment variables (a mapping source, and the environment of its executor processes)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from modelfleet.adapters.errors import ItemNotFound
from modelfleet.adapters.s3 import ArtifactStore
from modelfleet.adapters.scheduler import PipelineSchedules
from modelfleet.control.errors import InvalidRequest, NotFound
from modelfleet.core import cron
from modelfleet.faces.pipelines.datastore import DataStore
from modelfleet.faces.pipelines.settings import PipelineSettings
from modelfleet.faces.pipelines.store import PipelineStore
from modelfleet.pipelines.engine import PipelineEngine
from schemas.keys import Principal
from schemas.pipelines import (
    PipelineDeploymentRecord,
    PipelineDeploymentStatus,
)

log = logging.getLogger(__name__)
ENV_PREFIX = "pipelines/environment"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
ENV_CACHE_SECONDS = 2.0


def new_id() -> str:
    return uuid.uuid4().hex


def valid_cron(expression: str) -> str:
    try:
        return cron.validate(expression)
    except cron.InvalidCron as e:
        raise InvalidRequest(str(e), code="invalid_schedule") from None


class FaceBase:
    settings: PipelineSettings
    artifacts: ArtifactStore
    store: PipelineStore
    datastore: DataStore
    schedules: PipelineSchedules
    engine: PipelineEngine
    clock: Callable[[], datetime]
    node_memory_bytes: int
    _env_cache: dict[str, tuple[dict[str, str], float]]

    # --- environment variables (the project's; a mapping source) -----------------------------------
    def environment(self, project_id: str) -> dict[str, str]:
        """The project's variables (kept a few seconds: every trigger reads them)."""
        cached = self._env_cache.get(project_id)
        if cached is not None and time.monotonic() - cached[1] < ENV_CACHE_SECONDS:
            return dict(cached[0])
        try:
            raw = b"".join(self.artifacts.stream(f"{ENV_PREFIX}/{project_id}.json"))
            loaded: dict[str, str] = json.loads(raw)
        except ItemNotFound:
            loaded = {}
        self._env_cache[project_id] = (loaded, time.monotonic())
        return dict(loaded)

    def _save_environment(self, project_id: str, env: dict[str, str]) -> None:
        self.artifacts.put_bytes(f"{ENV_PREFIX}/{project_id}.json", json.dumps(env).encode())
        self._env_cache.pop(project_id, None)

    def put_environment(self, who: Principal, values: Any) -> None:
        import re

        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise InvalidRequest("environment_variables must be an object of string values")
        bad = [k for k in values if not re.match(ENV_NAME, str(k))]
        if bad:
            raise InvalidRequest(f"invalid environment variable name(s): {', '.join(map(str, bad))}")
        self._save_environment(who.project_id, {**self.environment(who.project_id), **values})

    def list_environment(self, who: Principal) -> list[dict[str, str]]:
        return [{"name": k, "value": v} for k, v in sorted(self.environment(who.project_id).items())]

    def delete_environment(self, who: Principal, name: str) -> dict[str, str]:
        env = self.environment(who.project_id)
        if name not in env:
            raise NotFound("environment variable", name)
        value = env.pop(name)
        self._save_environment(who.project_id, env)
        return {"name": name, "value": value}

    def set_deployment_status(
        self, project_id: str, name: str, status: PipelineDeploymentStatus, reason: str | None
    ) -> None:
        def change(d: PipelineDeploymentRecord) -> PipelineDeploymentRecord | None:
            if not d.is_enabled or (d.status == status and d.reason == reason):
                return None
            d.status, d.reason = status, reason
            return d

        self.store.update_deployment(project_id, name, change)
