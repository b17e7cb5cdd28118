"""The execution engine: runs execution records on deployment runners and keeps the records.

One engine per platform process (the local gateway; in the cloud, the pipeline node service). It
holds one `DeploymentRunner` per deployment (and one per pipeline for manual runs), turns the
runners' events into execution records in DynamoDB (Pending → Running → Succeeded | Failed) and
deployment statuses (`up`, `standby`, `creation_failed`), keeps each running execution's log lines
in memory (saved to S3 when it ends), maps outputs (endpoint value, data-store object, nowhere)
and wakes long-polls waiting on an execution.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelfleet.pipelines.runner import DeploymentRunner, RunnerConfig, RunnerState
from modelfleet.runtime.archives import ArchiveLimits, extract_archive
from schemas.pipelines import (
    DeploymentMode,
    ExecutionIo,
    ExecutionRecord,
    ExecutionStatus,
    MappingType,
    OutputDestination,
    PipelineDeploymentRecord,
    PipelineDeploymentStatus,
    PipelineRecord,
)

log = logging.getLogger(__name__)
MAX_LOG_LINES = 20_000
PIPELINE_ARCHIVE_LIMITS = ArchiveLimits(
    max_members=5_000, max_member_bytes=256 * 1024**2, max_total_bytes=1024**3
)


def run_key(project_id: str, pipeline_name: str) -> str:
    return f"{project_id}/run:{pipeline_name}"


def deployment_key(project_id: str, name: str) -> str:
    return f"{project_id}/{name}"


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class EngineBackend:
    """What the engine needs from storage; the face's store and data store provide it."""

    def save_execution(self, rec: ExecutionRecord) -> None:
        raise NotImplementedError

    def save_logs(self, project_id: str, execution_id: str, lines: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def set_deployment_status(
        self, project_id: str, name: str, status: PipelineDeploymentStatus, reason: str | None
    ) -> None:
        raise NotImplementedError

    def fetch_archive(self, pipeline: PipelineRecord, dest: Path) -> None:
        raise NotImplementedError

    def environment(self, project_id: str) -> dict[str, str]:
        """The project's environment variables, set in its executor processes."""
        raise NotImplementedError

    def put_datastore(self, project_id: str, path: str, data: bytes) -> None:
        raise NotImplementedError

    def get_datastore(self, project_id: str, path: str, dest: Path) -> None:
        raise NotImplementedError


class PipelineEngine:
    def __init__(self, backend: EngineBackend, workdir: Path, standby_after_s: float) -> None:
        self._backend = backend
        self._workdir = workdir
        self._standby_after_s = standby_after_s
        self._lock = threading.RLock()
        self._runners: dict[str, DeploymentRunner] = {}
        self._records: dict[str, ExecutionRecord] = {}  # executions not finished yet
        self._logs: dict[str, list[dict[str, Any]]] = {}
        self._done = threading.Condition()
        self._finished: set[str] = set()

    # --- deployments -----------------------------------------------------------------------------
    def _source(self, pipeline: PipelineRecord) -> Path:
        dest = self._workdir / "sources" / pipeline.project_id / pipeline.name / pipeline.archive_sha256[:24]
        if dest.exists():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            archive = Path(tmp) / "source.tar.gz"
            self._backend.fetch_archive(pipeline, archive)
            with contextlib.suppress(FileExistsError):
                extract_archive(archive, dest, PIPELINE_ARCHIVE_LIMITS)
        return dest

    def _config(
        self, key: str, pipeline: PipelineRecord, dep: PipelineDeploymentRecord | None
    ) -> RunnerConfig:
        source = self._source(pipeline)
        env = tuple(sorted(self._backend.environment(pipeline.project_id).items()))
        if dep is None:  # a manual run: one at a time, stand-by soon after
            return RunnerConfig(
                key,
                source,
                pipeline.function_path,
                pipeline.function_name,
                standby_after_s=self._standby_after_s,
                env=env,
            )
        return RunnerConfig(
            key,
            source,
            pipeline.function_path,
            pipeline.function_name,
            parallel=dep.enable_parallel_executions,
            max_parallel=dep.max_parallel_executions_per_pod,
            ram_limit_bytes=dep.ram_request_bytes or None,
            execution_timeout_s=float(dep.execution_timeout_s) if dep.execution_timeout_s else None,
            warm=dep.mode == DeploymentMode.LOW_LATENCY and dep.is_enabled,
            standby_after_s=self._standby_after_s,
            env=env,
        )

    def apply_deployment(self, dep: PipelineDeploymentRecord, pipeline: PipelineRecord) -> DeploymentRunner:
        """Make the deployment's runner match its record (a changed record gets a new runner)."""
        key = deployment_key(dep.project_id, dep.name)
        cfg = self._config(key, pipeline, dep)
        with self._lock:
            current = self._runners.get(key)
            if current is not None and current.cfg == cfg and current.state != RunnerState.FAILED:
                return current  # a failed import is tried again by a new runner
            runner = DeploymentRunner(cfg, self)
            self._runners[key] = runner
        if current is not None:
            current.retire()  # what it holds finishes there; new executions go to `runner`
        return runner

    def remove_deployment(self, project_id: str, name: str) -> None:
        with self._lock:
            runner = self._runners.pop(deployment_key(project_id, name), None)
        if runner is not None:
            runner.close()

    def runner(self, key: str) -> DeploymentRunner | None:
        with self._lock:
            return self._runners.get(key)

    # --- executions -----------------------------------------------------------------------------
    def submit(
        self,
        rec: ExecutionRecord,
        inputs: dict[str, Any],
        pipeline: PipelineRecord,
        dep: PipelineDeploymentRecord | None,
    ) -> None:
        """Run a Pending record (already saved). Data-store inputs are fetched first."""
        with self._lock:
            self._records[rec.execution_id] = rec
            self._logs[rec.execution_id] = []
        try:
            inputs = self._materialise_inputs(rec, inputs)
            if dep is None:
                key = run_key(rec.project_id, pipeline.name)
                cfg = self._config(key, pipeline, None)
                with self._lock:
                    runner = self._runners.get(key)
                    stale = runner if runner is not None and runner.cfg != cfg else None
                    if runner is None or stale is not None:
                        runner = DeploymentRunner(cfg, self)
                        self._runners[key] = runner
                if stale is not None:
                    stale.retire()
            else:
                runner = self.apply_deployment(dep, pipeline)
            runner.submit(rec.execution_id, inputs)
        except Exception as e:
            log.exception("execution %s could not start", rec.execution_id)
            self.on_finished(rec.execution_id, int(time.time() * 1000), False, {}, f"could not start: {e}")

    def _materialise_inputs(self, rec: ExecutionRecord, inputs: dict[str, Any]) -> dict[str, Any]:
        out = dict(inputs)
        for io in rec.inputs:
            if io.mapping_type == MappingType.DATASTORE:
                path = str(io.mapping_value.get("datastore_path"))
                local = self._workdir / "inputs" / rec.execution_id / Path(path).name
                local.parent.mkdir(parents=True, exist_ok=True)
                self._backend.get_datastore(rec.project_id, path, local)
                out[io.name] = {"path": str(local)}
        return out

    def wait(self, execution_id: str, timeout: float) -> bool:
        """True once the execution has ended here (False: not within `timeout`, or not ours)."""
        deadline = time.monotonic() + timeout
        with self._done:
            while execution_id not in self._finished:
                if execution_id not in self._records:
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._done.wait(left)
            return True

    def is_running_here(self, execution_id: str) -> bool:
        with self._lock:
            return execution_id in self._records

    def logs(self, execution_id: str) -> list[dict[str, Any]] | None:
        with self._lock:
            lines = self._logs.get(execution_id)
            return list(lines) if lines is not None else None

    # --- runner events ---------------------------------------------------------------------------
    def on_started(self, execution_id: str, at_ms: int, attempt: int) -> None:
        with self._lock:
            rec = self._records.get(execution_id)
            if rec is None:
                return
            rec.status = ExecutionStatus.RUNNING
            rec.attempts = attempt
            if rec.started_at is None:
                rec.started_at = _at(at_ms)
            snapshot = rec.model_copy(deep=True)
        self._backend.save_execution(snapshot)

    def on_log(self, execution_id: str, at_ms: int, stream: str, message: str) -> None:
        with self._lock:
            lines = self._logs.get(execution_id)
            if lines is not None and len(lines) < MAX_LOG_LINES:
                lines.append({"timestamp": _at(at_ms).isoformat(), "message": message, "stream": stream})

    def on_finished(
        self, execution_id: str, at_ms: int, ok: bool, outputs: dict[str, Any], error: str | None
    ) -> None:
        with self._lock:
            rec = self._records.get(execution_id)
            lines = self._logs.get(execution_id, [])
        if rec is None:
            return
        if ok:
            try:
                rec.outputs = self._map_outputs(rec, outputs)
            except Exception as e:
                ok, error = False, f"the outputs could not be kept: {e}"
        if not ok:
            rec.outputs = [
                ExecutionIo(
                    name=o.name,
                    data_type=o.data_type,
                    mapping_type=o.mapping_type,
                    mapping_value=o.mapping_value,
                    value=None,
                )
                for o in rec.outputs
            ]
        rec.status = ExecutionStatus.SUCCEEDED if ok else ExecutionStatus.FAILED
        rec.error = error
        rec.ended_at = _at(at_ms)
        if rec.started_at is None:
            rec.started_at = rec.ended_at
        if error and not ok:
            lines.append(
                {
                    "timestamp": rec.ended_at.isoformat(),
                    "message": f"execution failed: {error}",
                    "stream": "platform",
                }
            )
        try:
            self._backend.save_logs(rec.project_id, execution_id, lines)
            self._backend.save_execution(rec)
        finally:
            with self._lock:
                self._records.pop(execution_id, None)
                self._logs.pop(execution_id, None)
            shutil.rmtree(self._workdir / "inputs" / execution_id, ignore_errors=True)
            with self._done:
                self._finished.add(execution_id)
                if len(self._finished) > 100_000:
                    self._finished.clear()
                self._done.notify_all()

    def _map_outputs(self, rec: ExecutionRecord, outputs: dict[str, Any]) -> list[ExecutionIo]:
        mapped: list[ExecutionIo] = []
        for slot in rec.outputs:
            value = outputs.get(slot.name)
            if not (slot.mapping_type == MappingType.DATASTORE and isinstance(value, dict)) and not (
                slot.data_type.accepts(value)
            ):
                raise ValueError(
                    f"output {slot.name!r} must be of type {slot.data_type.value}, got {type(value).__name__}"
                )
            if slot.mapping_type == MappingType.DATASTORE and value is not None:
                path = str(slot.mapping_value.get("datastore_path"))
                path = path.replace("{execution_id}", rec.execution_id)
                if isinstance(value, dict) and isinstance(value.get("path"), str):
                    data = Path(value["path"]).read_bytes()
                else:
                    data = json.dumps(value).encode()
                self._backend.put_datastore(rec.project_id, path, data)
                value = {"datastore_path": path}
            elif slot.mapping_type == MappingType.NULL:
                value = None
            mapped.append(slot.model_copy(update={"value": value}))
        return mapped

    def on_state(self, key: str, state: RunnerState, reason: str | None) -> None:
        if "/run:" in key:
            return
        project_id, _, name = key.partition("/")
        status = {
            RunnerState.UP: PipelineDeploymentStatus.UP,
            RunnerState.STANDBY: PipelineDeploymentStatus.STANDBY,
            RunnerState.FAILED: PipelineDeploymentStatus.CREATION_FAILED,
        }.get(state)
        if status is None:
            return
        with self._lock:
            runner = self._runners.get(key)
        if runner is None or (runner.cfg.warm and status is PipelineDeploymentStatus.STANDBY):
            return
        self._backend.set_deployment_status(project_id, name, status, reason)

    def close(self) -> None:
        with self._lock:
            runners, self._runners = list(self._runners.values()), {}
        for r in runners:
            r.close("the platform is stopping")


def output_slots(outputs_mapping: list[OutputDestination], declared: list[Any]) -> list[ExecutionIo]:
    """One output slot per declared output, with its destination (endpoint output by default)."""
    by_name = {m.pipeline_output_name: m for m in outputs_mapping}
    slots = []
    for out in declared:
        m = by_name.get(out.name) or OutputDestination(pipeline_output_name=out.name)
        slots.append(
            ExecutionIo(
                name=out.name,
                data_type=out.data_type,
                mapping_type=m.mapping_type,
                mapping_value=m.mapping_value(),
                value=None,
            )
        )
    return slots


Clock = Callable[[], datetime]
