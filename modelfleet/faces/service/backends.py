"""Service backends: how `infer_type: batch` and `infer_type: edge` services plug into the
`/v1/{project_id}/services` face.

The service face owns the HTTP surface: it authenticates, checks that the caller's project is
the one in the path, validates the request body against the seed (`schemas.services.ServiceCreate`:
every field, limit and cross-field rule, including batch's single model and edge's `nodes`), checks
that every `model_id` is a ready model of the project, allocates the `service_id`, and keeps the
service's face-level record. It then hands the validated request to the backend registered for its
`infer_type` in `BACKENDS`; the real-time backend is the face's own. A backend owns everything after
that: its engine's records, its state, stopping and deleting. It answers with the `resource_ids` the
create response lists, and with `ServiceStatus` snapshots the face renders as the service's `status`,
`failed_reason` and `progress`. Backends raise `modelfleet.control.errors.ControlError` subclasses
(InvalidRequest, NotFound, Conflict, ...), which the face maps onto its `{error_code, error_msg}`
errors. Register at import time of your engine's module, e.g. in `modelfleet/faces/service/batch.py`:
`BACKENDS[InferType.BATCH] = BatchBackend(...)`, or lazily through `register()`; the face imports
`modelfleet.faces.service.plugins` (a list of module names, `PLUGIN_MODULES`) so registering needs
no edit of the face. Until a backend is registered, a create of that type answers 501
`ModelArts.3520` ("infer_type 'batch' is not available yet") — never a fake success.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from schemas.services import InferType, ServiceCreate


@dataclass(frozen=True)
class ServiceStatus:
    """What the face shows of a backend's service. `status` is one of `schemas.services.ServiceState`
    (deploying, running, concerning, failed, stopped, pending, finished, stopping, deleting, ...)."""

    status: str
    failed_reason: str = ""
    progress: int | None = None  # 0-100, batch services
    detail: dict[str, object] = field(default_factory=dict)  # extra fields merged into the view


class ServiceBackend(Protocol):
    """An engine for one infer_type. Every method gets `now` from the caller (no clock reads)."""

    def create(self, project_id: str, service_id: str, request: ServiceCreate, now: datetime) -> list[str]:
        """Start the service; return its resource ids (the create response's `resource_ids`)."""
        ...

    def status(self, project_id: str, service_id: str, now: datetime) -> ServiceStatus:
        """The service's current status; raise NotFound if the engine does not know it."""
        ...

    def stop(self, project_id: str, service_id: str, now: datetime) -> None:
        """Stop it (idempotent)."""
        ...

    def start(self, project_id: str, service_id: str, now: datetime) -> None:
        """Start a stopped service again (raise Conflict if the engine cannot)."""
        ...

    def delete(self, project_id: str, service_id: str, now: datetime) -> None:
        """Remove everything the engine keeps for the service (idempotent)."""
        ...


# infer_type -> its backend. Filled by the engines (batch: issue 5, edge: issue 7).
BACKENDS: dict[str, ServiceBackend] = {}

# Modules imported (if importable) before a batch/edge request is handled, so an engine can
# register itself without the face importing it by name. Engines append their module here.
PLUGIN_MODULES: list[str] = [
    "modelfleet.faces.service.batch",
    "modelfleet.faces.service.edge",
]


def register(infer_type: InferType | str, backend: ServiceBackend) -> None:
    BACKENDS[str(infer_type)] = backend


def backend_for(infer_type: str, load: Callable[[str], object] | None = None) -> ServiceBackend | None:
    """The backend of `infer_type`, importing the plugin modules once first (`load` = importlib's
    import_module; missing modules are skipped)."""
    if infer_type not in BACKENDS and load is not None:
        for name in PLUGIN_MODULES:
            try:
                load(name)
            except ModuleNotFoundError:
                continue
    return BACKENDS.get(infer_type)
