"""The `batch` backend of the service face: a batch service is one batch job (modelfleet.batch)
with the service's id. Imported by the face through `PLUGIN_MODULES`; registers itself."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import TYPE_CHECKING

from modelfleet.adapters import aws
from modelfleet.adapters.sqs import QueueConsumer, WorkQueue
from modelfleet.batch.jobs import BatchJobs, JobSpec
from modelfleet.batch.records import JobState
from modelfleet.control.errors import Conflict, InvalidRequest
from modelfleet.faces.service.backends import ServiceStatus, register

if TYPE_CHECKING:
    from schemas.services import ServiceCreate

__all__ = ["SERVICE_STATUS", "BatchBackend", "batch_jobs"]

# A job's state as the service's status: it "finishes" by itself when its data is processed.
SERVICE_STATUS: dict[JobState, str] = {
    JobState.PENDING: "deploying",
    JobState.RUNNING: "running",
    JobState.COMPLETED: "finished",
    JobState.FAILED: "failed",
    JobState.STOPPED: "stopped",
}

_lock = threading.Lock()
_jobs: BatchJobs | None = None


def batch_jobs() -> BatchJobs:
    """The process's BatchJobs, wired from the control plane's settings on first use."""
    global _jobs
    with _lock:
        if _jobs is None:
            from modelfleet.control.container import control_plane

            cp = control_plane()
            s = cp.settings
            sqs = aws.client("sqs", s)
            queue = WorkQueue(sqs, QueueConsumer.url_for(sqs, s.names.queue("batch-tasks")))
            _jobs = BatchJobs.from_settings(cp.repo, cp.events, queue, s)
        return _jobs


class BatchBackend:
    def create(self, project_id: str, service_id: str, request: ServiceCreate, now: datetime) -> list[str]:
        if len(request.config) != 1:
            raise InvalidRequest("a batch service takes exactly one model")
        c = request.config[0]
        spec = JobSpec(
            model_id=c.model_id,
            src_path=c.src_path or "",
            dest_path=c.dest_path or "",
            req_uri=c.req_uri or "",
            mapping_type=c.mapping_type or "",
            mapping_rule=c.mapping_rule,
            src_type=c.src_type,
        )
        job = batch_jobs().create(project_id, service_id, spec, now, service_id=service_id)
        return [f"batch-job:{job.job_id}"]

    def status(self, project_id: str, service_id: str, now: datetime) -> ServiceStatus:
        view = batch_jobs().view(project_id, service_id)
        job = view.job
        failed = job.reason if job.state == JobState.FAILED else ""
        return ServiceStatus(
            status=SERVICE_STATUS[job.state],
            failed_reason=failed,
            progress=view.percent,
            detail={"batch": view.as_dict()},
        )

    def stop(self, project_id: str, service_id: str, now: datetime) -> None:
        batch_jobs().stop(project_id, service_id, now)

    def start(self, project_id: str, service_id: str, now: datetime) -> None:
        raise Conflict("a batch service runs once; create a new one to process the data again")

    def delete(self, project_id: str, service_id: str, now: datetime) -> None:
        batch_jobs().delete(project_id, service_id, now)


register("batch", BatchBackend())
