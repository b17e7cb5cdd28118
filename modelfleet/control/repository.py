"""Typed access to the state tables, on top of the DynamoDB adapter.

Reads return records; writes are returned as `Write` objects so a service can commit a state
change, its routes and its events in one transaction. Any write to a deployment's routes goes
with a conditional write of the deployment itself, so the deployment's version serialises them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson

from modelfleet.adapters.dynamo import ABSENT, DynamoStore, Write
from schemas.deployments import DeploymentRecord, RouteRecord, route_key
from schemas.events import StatusEvent
from schemas.keys import ApiKeyRecord
from schemas.models import ModelRecord
from schemas.nodes import NodeRecord
from schemas.projects import ProjectRecord
from schemas.stats import InferenceStats


class Repository:
    def __init__(self, store: DynamoStore) -> None:
        self.store = store

    # --- projects ---------------------------------------------------------------------------
    def get_project(self, project_id: str) -> ProjectRecord | None:
        found = self.store.get("projects", {"project_id": project_id}, ProjectRecord)
        return found[0] if found else None

    def project_write(self, rec: ProjectRecord) -> Write:
        return Write("projects", {"project_id": rec.project_id}, rec, 1, expect_version=ABSENT)

    # --- api keys ---------------------------------------------------------------------------
    def get_key(self, key_id: str) -> ApiKeyRecord | None:
        found = self.store.get("api_keys", {"key_id": key_id}, ApiKeyRecord)
        return found[0] if found else None

    def key_write(self, rec: ApiKeyRecord, new: bool) -> Write:
        return Write(
            "api_keys",
            {"key_id": rec.key_id},
            rec,
            1,
            expect_version=ABSENT if new else None,
            attrs={"project_id": rec.project_id},
        )

    def list_keys(self, project_id: str) -> list[ApiKeyRecord]:
        return self.store.query("api_keys", "project_id", project_id, ApiKeyRecord, index="by_project")

    def any_key(self) -> bool:
        return next(iter(self.store.scan_items("api_keys")), None) is not None

    # --- models -----------------------------------------------------------------------------
    def get_model(self, project_id: str, model_id: str) -> ModelRecord | None:
        found = self.store.get("models", {"project_id": project_id, "model_id": model_id}, ModelRecord)
        return found[0] if found else None

    def model_write(self, rec: ModelRecord, expect: int) -> Write:
        return Write(
            "models",
            {"project_id": rec.project_id, "model_id": rec.model_id},
            rec,
            rec.version_no,
            expect_version=expect,
        )

    def model_delete(self, rec: ModelRecord) -> Write:
        return Write(
            "models",
            {"project_id": rec.project_id, "model_id": rec.model_id},
            expect_version=rec.version_no,
            delete=True,
        )

    def list_models(self, project_id: str) -> list[ModelRecord]:
        return self.store.query("models", "project_id", project_id, ModelRecord)

    # --- deployments ------------------------------------------------------------------------
    def get_deployment(self, project_id: str, deployment_id: str) -> DeploymentRecord | None:
        found = self.store.get(
            "deployments", {"project_id": project_id, "deployment_id": deployment_id}, DeploymentRecord
        )
        return found[0] if found else None

    def get_deployment_by_uid(self, uid: str) -> DeploymentRecord | None:
        found = self.store.query("deployments", "uid", uid, DeploymentRecord, index="by_uid", limit=1)
        return found[0] if found else None

    def list_deployments(self, project_id: str) -> list[DeploymentRecord]:
        return self.store.query("deployments", "project_id", project_id, DeploymentRecord)

    def all_deployments(self) -> list[DeploymentRecord]:
        return self.store.scan("deployments", DeploymentRecord)

    def deployment_write(self, rec: DeploymentRecord, expect: int) -> Write:
        """`rec.version_no` is the new version; `expect` the one read (ABSENT for a create)."""
        return Write(
            "deployments",
            {"project_id": rec.project_id, "deployment_id": rec.deployment_id},
            rec,
            rec.version_no,
            expect_version=expect,
            attrs={"uid": rec.uid},
        )

    def deployment_delete(self, rec: DeploymentRecord) -> Write:
        return Write(
            "deployments",
            {"project_id": rec.project_id, "deployment_id": rec.deployment_id},
            expect_version=rec.version_no,
            delete=True,
        )

    # --- routes -----------------------------------------------------------------------------
    def routes(self, deployment_uid: str) -> list[RouteRecord]:
        return self.store.query("routes", "deployment_uid", deployment_uid, RouteRecord)

    def all_routes(self) -> list[RouteRecord]:
        return self.store.scan("routes", RouteRecord)

    def node_routes(self, node_id: str) -> list[RouteRecord]:
        return self.store.query("routes", "node_id", node_id, RouteRecord, index="by_node")

    def route_write(self, r: RouteRecord) -> Write:
        return Write(
            "routes",
            {"deployment_uid": r.deployment_uid, "route_key": r.route_key},
            r,
            1,
            attrs={"node_id": r.node_id},
        )

    def route_delete(self, r: RouteRecord) -> Write:
        return Write(
            "routes",
            {"deployment_uid": r.deployment_uid, "route_key": route_key(r.version_id, r.node_id)},
            delete=True,
        )

    # --- nodes ------------------------------------------------------------------------------
    def get_node(self, node_id: str) -> NodeRecord | None:
        found = self.store.get("nodes", {"node_id": node_id}, NodeRecord)
        return found[0] if found else None

    def list_nodes(self) -> list[NodeRecord]:
        return self.store.scan("nodes", NodeRecord)

    def node_write(self, rec: NodeRecord, expect: int | None) -> Write:
        return Write("nodes", {"node_id": rec.node_id}, rec, rec.version_no, expect_version=expect)

    def touch_heartbeat(
        self, node_id: str, at: datetime, keep: timedelta, stats: dict[str, InferenceStats] | None = None
    ) -> None:
        """The node's last heartbeat, with its latest inference counters per route (one write)."""
        attrs: dict[str, str | int] = {
            "at_ms": int(at.timestamp() * 1000),
            "expires_at": int((at + keep).timestamp()),
        }
        if stats is not None:
            attrs["stats"] = orjson.dumps({k: v.model_dump() for k, v in stats.items()}).decode()
        self.store.write(Write("heartbeats", {"node_id": node_id}, attrs=attrs))

    def node_stats(self) -> dict[str, dict[str, InferenceStats]]:
        """node_id -> "<deployment uid>/<version id>" -> the counters of its last heartbeat."""
        out: dict[str, dict[str, InferenceStats]] = {}
        for item in self.store.scan_items("heartbeats"):
            raw = item.get("stats", {}).get("S")
            if raw:
                out[item["node_id"]["S"]] = {
                    k: InferenceStats.model_validate(v) for k, v in orjson.loads(raw).items()
                }
        return out

    def heartbeats(self) -> dict[str, float]:
        """node_id -> last heartbeat, seconds since the epoch."""
        return {
            i["node_id"]["S"]: int(i["at_ms"]["N"]) / 1000.0
            for i in self.store.scan_items("heartbeats")
            if "at_ms" in i
        }

    # --- events (history + outbox) ------------------------------------------------------------
    def event_write(self, ev: StatusEvent, keep: timedelta) -> Write:
        return Write(
            "events",
            {"aggregate_id": ev.aggregate_id, "event_id": ev.event_id},
            ev,
            1,
            attrs={"outbox": "pending", "expires_at": int((ev.at + keep).timestamp())},
        )

    def event_published(self, ev: StatusEvent) -> Write:
        return Write("events", {"aggregate_id": ev.aggregate_id, "event_id": ev.event_id}, remove=("outbox",))

    def events(self, aggregate_id: str, limit: int = 100) -> list[StatusEvent]:
        return self.store.query("events", "aggregate_id", aggregate_id, StatusEvent, limit=limit)

    def outbox(self) -> list[StatusEvent]:
        return self.store.query("events", "outbox", "pending", StatusEvent, index="outbox", limit=500)
