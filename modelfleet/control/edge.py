"""Edge services on registered edge nodes: desired states per node, fleet rollouts, and the
service status drawn from the nodes' reports (published through the event outbox).

A service keeps `node_models` (node -> the model its desired state holds now). Creating a service
assigns every node at once (nothing runs there yet); updating one starts a rollout that moves
`node_models` wave by wave (`modelfleet.core.fleet_rollout` decides). Each change recomputes the
touched nodes' desired states, whose revision is their ETag; held long-polls wake up. Rollouts
advance on status reports and on the scheduler's `edge_rollouts` tick, which also notices silent
nodes (offline) and refreshes service states.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta

from modelfleet.adapters.dynamo import ABSENT, Write
from modelfleet.adapters.errors import ConditionFailed
from modelfleet.adapters.s3 import ArtifactStore
from modelfleet.control.edge_nodes import EdgeNodes, online
from modelfleet.control.edge_rollouts import FleetRollouts
from modelfleet.control.edge_store import EdgeRepository
from modelfleet.control.errors import Conflict, InvalidRequest, NotFound
from modelfleet.control.events import EventLog
from modelfleet.control.ids import new_uid
from modelfleet.control.repository import Repository
from modelfleet.core import fleet_rollout as fr
from modelfleet.core.lifecycle import ModelState
from schemas.edge import (
    ArtifactLink,
    ArtifactRef,
    AssignmentView,
    DeploymentReport,
    DesiredState,
    DesiredStateView,
    EdgeAssignment,
    EdgeModelConfig,
    EdgeNodeState,
    EdgeNodeStatus,
    EdgeNodeView,
    EdgeServiceRecord,
    EdgeServiceView,
    RolloutEntryRecord,
    RolloutPolicyRequest,
    RolloutRecord,
    ServiceNodeView,
    StatusReport,
)
from schemas.events import StatusEvent
from schemas.keys import Principal, Role
from schemas.models import ModelRecord

log = logging.getLogger(__name__)
ATTEMPTS = 8  # optimistic writes that lose to a concurrent state refresh read again and retry


class EdgeControl:
    def __init__(
        self,
        repo: Repository,
        edge: EdgeRepository,
        nodes: EdgeNodes,
        events: EventLog,
        artifacts: ArtifactStore,
        offline_after: timedelta = timedelta(seconds=30),
        url_ttl_seconds: int = 3600,
    ) -> None:
        self._repo = repo
        self._edge = edge
        self.nodes = nodes
        self._events = events
        self._artifacts = artifacts
        self.offline_after = offline_after
        self._url_ttl = url_ttl_seconds
        self.rollouts = FleetRollouts(edge, events, offline_after, self.refresh_desired)
        # node -> (its last reported deployments, when): heartbeats that change nothing skip a read
        self._last_reports: dict[tuple[str, str], tuple[list[DeploymentReport], datetime]] = {}

    # --- desired states ----------------------------------------------------------------------------
    def assignments_for(
        self,
        project_id: str,
        node_id: str,
        services: list[EdgeServiceRecord] | None = None,
        models: dict[str, ModelRecord | None] | None = None,
    ) -> list[EdgeAssignment]:
        """The node's assignments (`services` and the `models` cache spare reads across many nodes)."""
        models = {} if models is None else models
        out: list[EdgeAssignment] = []
        if services is None:
            services = self._edge.list_services(project_id)
        for svc in sorted(services, key=lambda s: s.service_id):
            model_id = svc.node_models.get(node_id)
            if model_id is None or svc.stopped:
                continue
            if model_id not in models:
                models[model_id] = self._repo.get_model(project_id, model_id)
            model = models[model_id]
            if model is None:
                continue
            envs = next((c.envs for c in svc.config if c.model_id == model_id and node_id in c.nodes), {})
            out.append(
                EdgeAssignment(
                    service_id=svc.service_id,
                    name=svc.name,
                    model_id=model.model_id,
                    model_version=model.version,
                    format=model.format,
                    entry_file=model.entry_file,
                    files=[
                        ArtifactRef(name=a.name, sha256=a.sha256, size_bytes=a.size_bytes, s3_key=a.s3_key)
                        for a in model.artifacts
                    ],
                    signature=model.signature,
                    envs=envs,
                )
            )
        return out

    def initial_desired(self, project_id: str, node_id: str, now: datetime) -> DesiredState:
        return DesiredState(
            project_id=project_id,
            node_id=node_id,
            revision=1,
            assignments=self.assignments_for(project_id, node_id),
            updated_at=now,
        )

    def refresh_desired(self, project_id: str, node_ids: Iterable[str], now: datetime) -> None:
        """Recompute the nodes' desired states; a changed one gets the next revision."""
        changed = False
        services = self._edge.list_services(project_id)
        models: dict[str, ModelRecord | None] = {}
        for node_id in dict.fromkeys(node_ids):
            wanted = self.assignments_for(project_id, node_id, services, models)
            for _ in range(3):
                found = self._edge.get_desired(project_id, node_id)
                if found is None and self._edge.get_node(project_id, node_id) is None:
                    break  # deregistered
                if found is not None and found[0].assignments == wanted:
                    break
                revision = found[1] + 1 if found else 1
                rec = DesiredState(
                    project_id=project_id,
                    node_id=node_id,
                    revision=revision,
                    assignments=wanted,
                    updated_at=now,
                )
                try:
                    self._edge.store.write(self._edge.desired_write(rec, found[1] if found else ABSENT))
                    changed = True
                    break
                except ConditionFailed:
                    continue
        if changed:
            self.nodes.notifier.changed()

    def desired_view(self, desired: DesiredState) -> DesiredStateView:
        return DesiredStateView(
            node_id=desired.node_id,
            revision=desired.revision,
            assignments=[
                AssignmentView(
                    service_id=a.service_id,
                    name=a.name,
                    model_id=a.model_id,
                    model_version=a.model_version,
                    format=a.format,
                    entry_file=a.entry_file,
                    signature=a.signature,
                    envs=a.envs,
                    files=[
                        ArtifactLink(
                            name=f.name,
                            sha256=f.sha256,
                            size_bytes=f.size_bytes,
                            url=self._artifacts.presign_get(f.s3_key, self._url_ttl),
                        )
                        for f in a.files
                    ],
                )
                for a in desired.assignments
            ],
        )

    # --- nodes --------------------------------------------------------------------------------------
    def node_views(self, project_id: str, now: datetime) -> list[EdgeNodeView]:
        statuses = self._edge.list_status(project_id)
        return [
            self._node_view(n.node_id, n.name, n.registered_at, statuses.get(n.node_id), project_id, now)
            for n in self._edge.list_nodes(project_id)
        ]

    def node_view(
        self, who: Principal, node_id: str, now: datetime, readers: tuple[Role, ...] = ()
    ) -> EdgeNodeView:
        node, _ = self.nodes.own(who, node_id, readers)
        status = self._edge.get_status(who.project_id, node_id)
        return self._node_view(node_id, node.name, node.registered_at, status, who.project_id, now)

    def _node_view(
        self,
        node_id: str,
        name: str,
        registered_at: datetime,
        status: EdgeNodeStatus | None,
        project_id: str,
        now: datetime,
    ) -> EdgeNodeView:
        desired = self._edge.get_desired(project_id, node_id)
        if status is None:
            state = EdgeNodeState.NEVER_SEEN
        else:
            state = EdgeNodeState.ONLINE if online(status, now, self.offline_after) else EdgeNodeState.OFFLINE
        return EdgeNodeView(
            node_id=node_id,
            name=name,
            state=state,
            registered_at=registered_at,
            last_heartbeat=status.last_heartbeat if status else None,
            desired_revision=desired[1] if desired else 0,
            applied_revision=status.revision if status else 0,
            resources=status.resources if status else None,
            deployments=status.deployments if status else [],
        )

    def report(self, who: Principal, node_id: str, req: StatusReport, now: datetime) -> None:
        """A node's heartbeat and deployment states. A change of deployment states advances the
        rollouts of its services and refreshes their status at once (heartbeats alone wait for
        the tick)."""
        key = (who.project_id, node_id)
        last = self._last_reports.get(key)
        if last is None:  # not seen by this process yet: ask the store
            before = self._edge.get_status(who.project_id, node_id)
            last = (before.deployments, before.last_heartbeat) if before else None
        status = self.nodes.report(who, node_id, req, now)
        self._last_reports[key] = (status.deployments, now)
        came_back = last is None or now - last[1] > self.offline_after
        if last is not None and last[0] == status.deployments and not came_back:
            return
        for svc in self._edge.list_services(who.project_id):
            if node_id in svc.node_models or any(node_id in c.nodes for c in svc.config):
                self.rollouts.progress(svc, now)

    # --- services -------------------------------------------------------------------------------------
    def _check_config(self, project_id: str, config: list[EdgeModelConfig]) -> dict[str, str]:
        """node -> model of a config; refuses unknown or foreign nodes, unready models, a node twice."""
        known = {n.node_id for n in self._edge.list_nodes(project_id)}
        target: dict[str, str] = {}
        unknown: list[str] = []
        for c in config:
            for n in c.nodes:
                if n not in known:
                    unknown.append(n)
                elif n in target:
                    raise InvalidRequest(f"edge node '{n}' is listed twice", code="validation_failed")
                target[n] = c.model_id
        if unknown:
            raise InvalidRequest(
                f"unknown edge nodes: {', '.join(sorted(set(unknown)))}",
                code="unknown_edge_nodes",
                details=[
                    {"field": "config.nodes", "problem": "not a registered node of this project", "given": n}
                    for n in sorted(set(unknown))
                ],
            )
        for c in config:
            model = self._repo.get_model(project_id, c.model_id)
            if model is None:
                raise NotFound("model", c.model_id)
            if model.state != ModelState.READY:
                raise Conflict(
                    f"model '{c.model_id}' is {model.state.value}, not ready", code="model_not_ready"
                )
        return target

    def create_service(
        self,
        project_id: str,
        name: str,
        description: str,
        config: list[EdgeModelConfig],
        now: datetime,
        service_id: str | None = None,
    ) -> EdgeServiceRecord:
        target = self._check_config(project_id, config)
        if any(s.name == name for s in self._edge.list_services(project_id)):
            raise Conflict(f"an edge service named '{name}' exists", code="service_exists")
        rec = EdgeServiceRecord(
            project_id=project_id,
            service_id=service_id or new_uid(),
            name=name,
            description=description,
            config=config,
            node_models=target,
            created_at=now,
            updated_at=now,
        )
        event = self.rollouts.event(rec, None, rec.state.value, "created", now)
        try:
            self._edge.store.transact(
                [
                    self._edge.service_write(rec, ABSENT),
                    self._edge.service_index(project_id, rec.service_id, present=True),
                    *self._events.writes([event]),
                ]
            )
        except ConditionFailed:
            raise Conflict(f"edge service '{rec.service_id}' exists", code="service_exists") from None
        self._events.publish([event])
        self.refresh_desired(project_id, target, now)
        return rec

    def get_service(self, project_id: str, service_id: str) -> EdgeServiceRecord:
        rec = self._edge.get_service(project_id, service_id)
        if rec is None:
            raise NotFound("edge service", service_id)
        return rec

    def service_view(self, project_id: str, service_id: str, now: datetime) -> EdgeServiceView:
        svc = self.get_service(project_id, service_id)
        statuses = self._edge.list_status(project_id)
        rollout = self._edge.get_rollout(project_id, svc.rollout_id) if svc.rollout_id else None
        return EdgeServiceView(
            service_id=svc.service_id,
            service_name=svc.name,
            description=svc.description,
            status=svc.state,
            failed_reason=svc.reason,
            config=svc.config,
            nodes=[
                ServiceNodeView(node_id=n, model_id=m, state=s, reason=r)
                for n, m, s, r in self.rollouts.serving(svc, statuses, now)
            ],
            rollout=rollout,
            stopped=svc.stopped,
            created_at=svc.created_at,
            updated_at=svc.updated_at,
        )

    def service_views(self, project_id: str, now: datetime) -> list[EdgeServiceView]:
        return [
            self.service_view(project_id, s.service_id, now) for s in self._edge.list_services(project_id)
        ]

    def update_service(
        self,
        project_id: str,
        service_id: str,
        config: list[EdgeModelConfig],
        policy: RolloutPolicyRequest,
        now: datetime,
    ) -> RolloutRecord:
        """New models for the service's nodes, rolled out in waves (409 while one runs). A state
        refresh that lands in between is not the caller's conflict: read again and retry."""
        self.get_service(project_id, service_id)  # another project's service: 404 before anything else
        target = self._check_config(project_id, config)
        for _ in range(ATTEMPTS):
            try:
                return self._update_once(project_id, service_id, config, target, policy, now)
            except ConditionFailed:
                continue
        raise Conflict("the service kept changing; retry", code="concurrent_update")

    def _update_once(
        self,
        project_id: str,
        service_id: str,
        config: list[EdgeModelConfig],
        target: dict[str, str],
        policy: RolloutPolicyRequest,
        now: datetime,
    ) -> RolloutRecord:
        svc = self.get_service(project_id, service_id)
        if svc.rollout_id:
            current = self._edge.get_rollout(project_id, svc.rollout_id)
            if current is not None and current.state is fr.RolloutState.IN_PROGRESS:
                raise Conflict("a rollout of this service is in progress", code="rollout_in_progress")
        entries = [
            RolloutEntryRecord(
                node_id=n, progress=fr.NodeProgress.PENDING, from_model=svc.node_models.get(n), to_model=m
            )
            for n, m in target.items()
            if svc.node_models.get(n) != m
        ]
        removed = [n for n in svc.node_models if n not in target]
        node_models = {n: m for n, m in svc.node_models.items() if n in target}
        rollout = RolloutRecord(
            project_id=project_id,
            rollout_id=new_uid(),
            service_id=service_id,
            state=fr.RolloutState.IN_PROGRESS if entries else fr.RolloutState.COMPLETED,
            policy=policy,
            entries=entries,
            created_at=now,
            updated_at=now,
        )
        updated = svc.model_copy(
            update={
                "config": config,
                "node_models": node_models,
                "rollout_id": rollout.rollout_id,
                "updated_at": now,
                "version_no": svc.version_no + 1,
            }
        )
        writes: list[Write] = [
            self._edge.service_write(updated, svc.version_no),
            self._edge.rollout_write(rollout, ABSENT),
        ]
        if entries:
            writes.append(self._edge.rollout_marker(project_id, rollout.rollout_id, active=True))
        self._edge.store.transact(writes)
        self.refresh_desired(project_id, removed, now)
        self.rollouts.progress(updated, now)
        return self._edge.get_rollout(project_id, rollout.rollout_id) or rollout

    def set_stopped(self, project_id: str, service_id: str, stopped: bool, now: datetime) -> None:
        """Stop (nodes unload its model) or start it again; idempotent."""
        for _ in range(ATTEMPTS):
            svc = self.get_service(project_id, service_id)
            if svc.stopped == stopped:
                return
            updated = svc.model_copy(
                update={"stopped": stopped, "updated_at": now, "version_no": svc.version_no + 1}
            )
            event = self.rollouts.event(
                svc, svc.state.value, "stopped" if stopped else svc.state.value, "", now
            )
            try:
                self._edge.store.transact(
                    [self._edge.service_write(updated, svc.version_no), *self._events.writes([event])]
                )
            except ConditionFailed:
                continue
            self._events.publish([event])
            self.refresh_desired(project_id, svc.node_models, now)
            return
        raise Conflict("the service kept changing; retry", code="concurrent_update")

    def delete_service(self, project_id: str, service_id: str, now: datetime) -> None:
        for _ in range(ATTEMPTS):
            svc = self.get_service(project_id, service_id)
            writes = [
                self._edge.service_delete(svc),
                self._edge.service_index(project_id, service_id, present=False),
            ]
            if svc.rollout_id:
                writes.append(self._edge.rollout_marker(project_id, svc.rollout_id, active=False))
            event = self.rollouts.event(svc, svc.state.value, "deleted", "deleted", now)
            try:
                self._edge.store.transact([*writes, *self._events.writes([event])])
            except ConditionFailed:
                continue
            self._events.publish([event])
            self.refresh_desired(project_id, svc.node_models, now)
            return
        raise Conflict("the service kept changing; retry", code="concurrent_update")

    def tick(self, now: datetime) -> dict[str, int]:
        return self.rollouts.tick(now)

    def history(self, project_id: str, service_id: str) -> list[StatusEvent]:
        self.get_service(project_id, service_id)
        return self._events.history(service_id)


_lock = threading.Lock()
_instance: EdgeControl | None = None


def edge_control() -> EdgeControl:
    """The process's edge control plane, built on the control plane's adapters on first use."""
    global _instance
    with _lock:
        if _instance is None:
            from modelfleet.control.container import control_plane

            cp = control_plane()
            edge = EdgeRepository(cp.repo.store)
            nodes = EdgeNodes(
                cp.repo,
                edge,
                cp.keys,
                longpoll_slots=int(os.environ.get("MODELFLEET_EDGE_LONGPOLL_SLOTS", "24")),
            )
            _instance = EdgeControl(
                cp.repo,
                edge,
                nodes,
                cp.events,
                cp.artifacts,
                offline_after=timedelta(seconds=float(os.environ.get("MODELFLEET_EDGE_OFFLINE_AFTER", "30"))),
                url_ttl_seconds=cp.settings.artifact_url_ttl_seconds,
            )
        return _instance
