"""The engine between runners and records, with an in-memory backend (storage only): statuses,
output mapping (endpoint, data store, nowhere), output types, data-store inputs, waits."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from modelfleet.pipelines.engine import EngineBackend, PipelineEngine, output_slots
from schemas.pipelines import (
    DataType,
    ExecutionIo,
    ExecutionRecord,
    ExecutionStatus,
    IoSpec,
    MappingType,
    OutputDestination,
    PipelineDeploymentStatus,
    PipelineRecord,
    TriggerKind,
)

SOURCE = b"""
def f(x, doc=None):
    text = open(doc["path"]).read() if doc else ""
    print("running", x)
    return {"y": x * 2, "z": {"echo": text}, "w": "ignored"}

def wrong(x):
    return {"y": "not a number"}
"""


class MemoryBackend(EngineBackend):
    def __init__(self, archive: bytes) -> None:
        self.archive = archive
        self.records: dict[str, ExecutionRecord] = {}
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self.objects: dict[str, bytes] = {"in/doc.txt": b"from the store"}
        self.statuses: list[PipelineDeploymentStatus] = []

    def save_execution(self, rec: ExecutionRecord) -> None:
        self.records[rec.execution_id] = rec.model_copy(deep=True)

    def save_logs(self, project_id: str, execution_id: str, lines: list[dict[str, Any]]) -> None:
        self.logs[execution_id] = lines

    def set_deployment_status(self, project_id: str, name: str, status: PipelineDeploymentStatus,
                              reason: str | None) -> None:  # fmt: skip
        self.statuses.append(status)

    def fetch_archive(self, pipeline: PipelineRecord, dest: Path) -> None:
        dest.write_bytes(self.archive)

    def environment(self, project_id: str) -> dict[str, str]:
        return {}

    def put_datastore(self, project_id: str, path: str, data: bytes) -> None:
        self.objects[path] = data

    def get_datastore(self, project_id: str, path: str, dest: Path) -> None:
        dest.write_bytes(self.objects[path])


def tar_gz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[PipelineEngine, MemoryBackend]]:
    backend = MemoryBackend(tar_gz({"main.py": SOURCE}))
    e = PipelineEngine(backend, tmp_path / "work", standby_after_s=60)
    yield e, backend
    e.close()


def pipeline(function: str) -> PipelineRecord:
    return PipelineRecord(
        project_id="p", name=f"pipe-{function}", function_path="main.py", function_name=function,
        inputs=[IoSpec(name="x", data_type=DataType.NUMBER), IoSpec(name="doc", data_type=DataType.FILE)],
        outputs=[IoSpec(name="y", data_type=DataType.NUMBER), IoSpec(name="z", data_type=DataType.JSON),
                 IoSpec(name="w", data_type=DataType.STRING)],
        archive_sha256="a" * 64, created_at=datetime.now(UTC),
    )  # fmt: skip


def record(pipe: PipelineRecord, execution_id: str, inputs: list[ExecutionIo]) -> ExecutionRecord:
    mapping = [
        OutputDestination(pipeline_output_name="z", datastore_path="out/{execution_id}.json"),
        OutputDestination(pipeline_output_name="w", is_null=True),
    ]
    return ExecutionRecord(
        project_id="p", execution_id=execution_id, pipeline_name=pipe.name, trigger=TriggerKind.MANUAL,
        inputs=inputs, outputs=output_slots(mapping, pipe.outputs), created_at=datetime.now(UTC),
    )  # fmt: skip


def test_a_manual_run_maps_outputs_and_reads_data_store_inputs(
    engine: tuple[PipelineEngine, MemoryBackend],
) -> None:
    e, backend = engine
    pipe = pipeline("f")
    doc = ExecutionIo(name="doc", data_type=DataType.FILE, mapping_type=MappingType.DATASTORE,
                      mapping_value={"datastore_path": "in/doc.txt"})  # fmt: skip
    rec = record(pipe, "e1", [doc])
    e.submit(rec, {"x": 21}, pipe, None)
    assert e.wait("e1", timeout=30)
    done = backend.records["e1"]
    assert done.status == ExecutionStatus.SUCCEEDED and done.started_at is not None
    values = {o.name: (o.mapping_type, o.value) for o in done.outputs}
    assert values["y"] == (MappingType.ENDPOINT, 42)
    assert values["z"] == (MappingType.DATASTORE, {"datastore_path": "out/e1.json"})
    assert values["w"] == (MappingType.NULL, None)
    assert json.loads(backend.objects["out/e1.json"]) == {"echo": "from the store"}
    assert any(line["message"] == "running 21" for line in backend.logs["e1"])


def test_an_output_of_the_wrong_type_fails_the_execution(
    engine: tuple[PipelineEngine, MemoryBackend],
) -> None:
    e, backend = engine
    pipe = pipeline("wrong")
    e.submit(record(pipe, "e2", []), {"x": 1}, pipe, None)
    assert e.wait("e2", timeout=30)
    done = backend.records["e2"]
    assert done.status == ExecutionStatus.FAILED
    assert done.error is not None and "output 'y' must be of type number" in done.error
    assert all(o.value is None for o in done.outputs)


def test_waiting_on_an_unknown_execution_returns_at_once(
    engine: tuple[PipelineEngine, MemoryBackend],
) -> None:
    e, _ = engine
    assert e.wait("never-submitted", timeout=30) is False
