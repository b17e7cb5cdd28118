"""The `edge` backend of the service face (`infer_type: edge`): the service becomes an edge service
of modelfleet.control.edge with the face's service id, its config's `nodes` checked against the
project's registered edge nodes (unknown or foreign ids are refused). Imported by the face through
`PLUGIN_MODULES`; registers itself. New models for the nodes roll out through
`PUT /api/v1/edge/services/{id}` (waves, abort criteria)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from modelfleet.control.edge import edge_control
from modelfleet.control.errors import InvalidRequest, NotFound
from modelfleet.faces.service.backends import ServiceStatus, register
from schemas.edge import EdgeModelConfig

if TYPE_CHECKING:
    from schemas.services import ServiceCreate

__all__ = ["EdgeBackend"]


class EdgeBackend:
    def create(self, project_id: str, service_id: str, request: ServiceCreate, now: datetime) -> list[str]:
        configs = []
        for c in request.config:
            if not c.nodes:
                raise InvalidRequest("an edge service's config lists its nodes", code="validation_failed")
            configs.append(
                EdgeModelConfig(
                    model_id=c.model_id,
                    nodes=c.nodes,
                    envs=c.envs or {},
                    specification=c.specification,
                    instance_count=c.instance_count,
                    custom_spec=c.custom_spec.model_dump(exclude_none=True) if c.custom_spec else None,
                )
            )
        rec = edge_control().create_service(
            project_id, request.service_name, request.description or "", configs, now, service_id=service_id
        )
        return [f"edge-service:{rec.service_id}"]

    def status(self, project_id: str, service_id: str, now: datetime) -> ServiceStatus:
        view = edge_control().service_view(project_id, service_id, now)
        return ServiceStatus(
            status="stopped" if view.stopped else view.status.value,
            failed_reason=view.failed_reason,
            detail={"edge": view.model_dump(mode="json", include={"nodes", "rollout"})},
        )

    def stop(self, project_id: str, service_id: str, now: datetime) -> None:
        edge_control().set_stopped(project_id, service_id, True, now)

    def start(self, project_id: str, service_id: str, now: datetime) -> None:
        edge_control().set_stopped(project_id, service_id, False, now)

    def delete(self, project_id: str, service_id: str, now: datetime) -> None:
        try:
            edge_control().delete_service(project_id, service_id, now)
        except NotFound:
            return


register("edge", EdgeBackend())
