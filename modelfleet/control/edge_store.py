"""Typed access to the `edge` table (one table, `pk`/`sk` keys): registration tokens, edge nodes,
their desired states and status, edge services, rollouts, and the index of running rollouts.

Partition keys are `<kind>#<project>` so a project's nodes (or services) are one query, and a
record of another project is simply not found.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

from modelfleet.adapters.dynamo import ABSENT, DynamoStore, Write
from schemas.edge import (
    DesiredState,
    EdgeNodeRecord,
    EdgeNodeStatus,
    EdgeServiceRecord,
    RegistrationTokenRecord,
    RolloutRecord,
)

M = TypeVar("M", bound=BaseModel)
TABLE = "edge"
STATUS_TABLE = "edge_status"  # frequent heartbeat writes: not journaled locally (rebuilt in seconds)
ACTIVE_ROLLOUTS = "active-rollouts"
SERVICE_INDEX = "service-index"


class _Marker(BaseModel):
    project_id: str
    rollout_id: str


def _key(kind: str, project_id: str, ident: str) -> dict[str, str]:
    return {"pk": f"{kind}#{project_id}", "sk": ident}


class EdgeRepository:
    def __init__(self, store: DynamoStore) -> None:
        self.store = store

    # generic ------------------------------------------------------------------------------------
    def _get(self, kind: str, project_id: str, ident: str, model: type[M]) -> tuple[M, int] | None:
        return self.store.get(TABLE, _key(kind, project_id, ident), model)

    def _all(self, kind: str, project_id: str, model: type[M]) -> list[M]:
        return self.store.query(TABLE, "pk", f"{kind}#{project_id}", model)

    @staticmethod
    def _put(
        kind: str, project_id: str, ident: str, doc: BaseModel, version: int, expect: int | None
    ) -> Write:
        return Write(TABLE, _key(kind, project_id, ident), doc, version, expect_version=expect)

    @staticmethod
    def _delete(kind: str, project_id: str, ident: str) -> Write:
        return Write(TABLE, _key(kind, project_id, ident), delete=True)

    # registration tokens (keyed by the token's key id; project-independent lookup) ---------------
    def get_token(self, key_id: str) -> tuple[RegistrationTokenRecord, int] | None:
        return self._get("token", "-", key_id, RegistrationTokenRecord)

    def token_write(self, rec: RegistrationTokenRecord, version: int, expect: int) -> Write:
        return self._put("token", "-", rec.key_id, rec, version, expect)

    # nodes -------------------------------------------------------------------------------------
    def get_node(self, project_id: str, node_id: str) -> tuple[EdgeNodeRecord, int] | None:
        return self._get("node", project_id, node_id, EdgeNodeRecord)

    def list_nodes(self, project_id: str) -> list[EdgeNodeRecord]:
        return self._all("node", project_id, EdgeNodeRecord)

    def node_write(self, rec: EdgeNodeRecord, version: int, expect: int) -> Write:
        return self._put("node", rec.project_id, rec.node_id, rec, version, expect)

    def node_delete(self, project_id: str, node_id: str) -> list[Write]:
        status = Write(STATUS_TABLE, _key("status", project_id, node_id), delete=True)
        return [
            self._delete("node", project_id, node_id),
            self._delete("desired", project_id, node_id),
            status,
        ]

    # desired states ------------------------------------------------------------------------------
    def get_desired(self, project_id: str, node_id: str) -> tuple[DesiredState, int] | None:
        return self._get("desired", project_id, node_id, DesiredState)

    def desired_write(self, rec: DesiredState, expect: int) -> Write:
        return self._put("desired", rec.project_id, rec.node_id, rec, rec.revision, expect)

    # node status (heartbeats and reports) -------------------------------------------------------------
    def get_status(self, project_id: str, node_id: str) -> EdgeNodeStatus | None:
        found = self.store.get(STATUS_TABLE, _key("status", project_id, node_id), EdgeNodeStatus)
        return found[0] if found else None

    def list_status(self, project_id: str) -> dict[str, EdgeNodeStatus]:
        found = self.store.query(STATUS_TABLE, "pk", f"status#{project_id}", EdgeNodeStatus)
        return {s.node_id: s for s in found}

    def status_write(self, rec: EdgeNodeStatus) -> Write:
        return Write(STATUS_TABLE, _key("status", rec.project_id, rec.node_id), rec, 1)

    # services ----------------------------------------------------------------------------------------
    def get_service(self, project_id: str, service_id: str) -> EdgeServiceRecord | None:
        found = self._get("service", project_id, service_id, EdgeServiceRecord)
        return found[0] if found else None

    def list_services(self, project_id: str) -> list[EdgeServiceRecord]:
        return self._all("service", project_id, EdgeServiceRecord)

    def service_write(self, rec: EdgeServiceRecord, expect: int) -> Write:
        """`rec.version_no` is the new version; `expect` the one read (ABSENT for a create)."""
        return self._put("service", rec.project_id, rec.service_id, rec, rec.version_no, expect)

    def service_delete(self, rec: EdgeServiceRecord) -> Write:
        return Write(
            TABLE, _key("service", rec.project_id, rec.service_id), delete=True, expect_version=rec.version_no
        )

    def service_projects(self) -> set[str]:
        """Projects that have edge services (the tick's scope), from the service index."""
        return {m.project_id for m in self.store.query(TABLE, "pk", SERVICE_INDEX, _Marker)}

    def service_index(self, project_id: str, service_id: str, present: bool) -> Write:
        key = {"pk": SERVICE_INDEX, "sk": f"{project_id}/{service_id}"}
        if present:
            return Write(TABLE, key, _Marker(project_id=project_id, rollout_id=service_id), 1)
        return Write(TABLE, key, delete=True)

    # rollouts -----------------------------------------------------------------------------------------
    def get_rollout(self, project_id: str, rollout_id: str) -> RolloutRecord | None:
        found = self._get("rollout", project_id, rollout_id, RolloutRecord)
        return found[0] if found else None

    def rollout_write(self, rec: RolloutRecord, expect: int) -> Write:
        return self._put("rollout", rec.project_id, rec.rollout_id, rec, rec.version_no, expect)

    def active_rollouts(self) -> list[tuple[str, str]]:
        """(project, rollout id) of every rollout still in progress, across projects."""
        return [(m.project_id, m.rollout_id) for m in self.store.query(TABLE, "pk", ACTIVE_ROLLOUTS, _Marker)]

    def rollout_marker(self, project_id: str, rollout_id: str, active: bool) -> Write:
        key = {"pk": ACTIVE_ROLLOUTS, "sk": f"{project_id}/{rollout_id}"}
        if active:
            return Write(TABLE, key, _Marker(project_id=project_id, rollout_id=rollout_id), 1)
        return Write(TABLE, key, delete=True)


__all__ = ["ABSENT", "EdgeRepository"]
