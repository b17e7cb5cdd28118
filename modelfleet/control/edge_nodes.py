"""Edge nodes: one-time registration tokens, per-node keys (rotatable), deregistration, the
desired-state long-poll and status reports.

Credentials reuse the key machinery: a registration token is an expiring `node` key of the project,
marked as a token here; registering spends it (a conditional write, so it works once) and mints
the node's own `node` key, whose id the node record holds. Every node route checks that the
caller's key is that node's key: another node's (or project's) ids answer 404. Deregistering or
rotating revokes through `KeyService.revoke`, which also drops the cached verdicts, so the old
credential stops working at once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from modelfleet.adapters.dynamo import ABSENT
from modelfleet.adapters.errors import ConditionFailed
from modelfleet.control.edge_store import EdgeRepository
from modelfleet.control.errors import Conflict, Forbidden, NotFound
from modelfleet.control.keys import KeyService
from modelfleet.control.repository import Repository
from schemas.edge import (
    DesiredState,
    EdgeNodeRecord,
    EdgeNodeStatus,
    EdgeRegister,
    EdgeRegistered,
    NodeKeyRotated,
    RegistrationTokenRecord,
    StatusReport,
    TokenCreate,
    TokenCreated,
)
from schemas.keys import KeyCreate, Principal, Role

OWNER_CACHE_SECONDS = 5.0


class DesiredNotifier:
    """Wakes long-polls held in this process when a desired state changes (others re-read the
    store every `recheck` seconds, so a write from another process is seen soon after)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def changed(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def wait(self, seen: int, timeout: float) -> None:
        with self._cond:
            if self._generation == seen:
                self._cond.wait(timeout)


class EdgeNodes:
    def __init__(
        self,
        repo: Repository,
        edge: EdgeRepository,
        keys: KeyService,
        longpoll_slots: int = 24,
        recheck_seconds: float = 2.0,
    ) -> None:
        self._repo = repo
        self._edge = edge
        self._keys = keys
        self.notifier = DesiredNotifier()
        self._slots = threading.BoundedSemaphore(max(1, longpoll_slots))
        self._recheck = recheck_seconds
        self._owners: dict[tuple[str, str, str], tuple[float, tuple[EdgeNodeRecord, int]]] = {}

    # --- tokens and registration -----------------------------------------------------------------
    def create_token(self, project_id: str, req: TokenCreate, now: datetime) -> TokenCreated:
        if req.node_id is not None and self._edge.get_node(project_id, req.node_id) is not None:
            raise Conflict(f"edge node '{req.node_id}' is already registered", code="node_exists")
        key, credential = self._keys.new_key(
            project_id,
            KeyCreate(
                name=f"edge registration {req.name}".strip()[:128],
                roles=[Role.NODE],
                expires_in_seconds=req.expires_in_seconds,
            ),
            now,
        )
        token = RegistrationTokenRecord(
            key_id=key.key_id, project_id=project_id, node_id=req.node_id, name=req.name, created_at=now
        )
        self._edge.store.transact(
            [self._repo.key_write(key, new=True), self._edge.token_write(token, 1, ABSENT)]
        )
        assert key.expires_at is not None
        return TokenCreated(
            token_id=key.key_id, token=credential, node_id=req.node_id, expires_at=key.expires_at
        )

    def register(
        self, who: Principal, req: EdgeRegister, now: datetime, initial: Callable[[str, str], DesiredState]
    ) -> EdgeRegistered:
        """Spend the caller's registration token; `initial(project, node)` is the node's first
        desired state (services may already list a re-registered node id)."""
        found = self._edge.get_token(who.key_id)
        if found is None or found[0].project_id != who.project_id:
            raise Forbidden("this key is not a registration token", code="not_a_registration_token")
        token, version = found
        if token.used_at is not None:
            raise Forbidden("this registration token was already used", code="token_used")
        node_id = token.node_id or str(uuid.uuid4())
        if self._edge.get_node(who.project_id, node_id) is not None:
            raise Conflict(f"edge node '{node_id}' is already registered", code="node_exists")
        key, credential = self._keys.new_key(
            who.project_id, KeyCreate(name=f"edge node {node_id}", roles=[Role.NODE]), now
        )
        node = EdgeNodeRecord(
            project_id=who.project_id,
            node_id=node_id,
            name=req.name,
            key_id=key.key_id,
            agent_version=req.agent_version,
            registered_at=now,
        )
        used = token.model_copy(update={"used_at": now, "used_by": node_id})
        desired = initial(who.project_id, node_id)
        existing = self._edge.get_desired(who.project_id, node_id)
        writes = [
            self._edge.token_write(used, version + 1, version),
            self._edge.node_write(node, 1, ABSENT),
            self._repo.key_write(key, new=True),
            self._edge.desired_write(
                desired.model_copy(update={"revision": (existing[1] if existing else 0) + 1}),
                existing[1] if existing else ABSENT,
            ),
        ]
        try:
            self._edge.store.transact(writes)
        except ConditionFailed:
            raise Conflict("the token was used or the node registered meanwhile", code="token_used") from None
        self._keys.revoke(who.project_id, who.key_id, now)  # spent: refused from now on, cache too
        return EdgeRegistered(node_id=node_id, project_id=who.project_id, node_key=credential)

    # --- the node's own routes ---------------------------------------------------------------------
    def own(self, who: Principal, node_id: str, readers: tuple[Role, ...] = ()) -> tuple[EdgeNodeRecord, int]:
        """The node record if the caller is that node (or, for reads, holds one of `readers`).
        Anything else is 404: a node cannot tell other nodes' ids from absent ones.

        A node's record is remembered for a few seconds once its own key matched it (heartbeats
        and polls then skip a read). That never lets a stale key in: rotating or deregistering
        revokes the old key, which the authorizer refuses before this is asked."""
        cache_key = (who.project_id, node_id, who.key_id)
        hit = self._owners.get(cache_key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        found = self._edge.get_node(who.project_id, node_id)
        if found is None:
            raise NotFound("edge node", node_id)
        if found[0].key_id == who.key_id:
            if len(self._owners) > 50_000:
                self._owners.clear()
            self._owners[cache_key] = (time.monotonic() + OWNER_CACHE_SECONDS, found)
            return found
        if readers and Role.NODE not in who.roles and who.has(*readers):
            return found
        raise NotFound("edge node", node_id)

    def rotate_key(self, who: Principal, node_id: str, now: datetime) -> NodeKeyRotated:
        self.own(who, node_id)
        found = self._edge.get_node(who.project_id, node_id)
        if found is None:
            raise NotFound("edge node", node_id)
        node, version = found
        key, credential = self._keys.new_key(
            who.project_id, KeyCreate(name=f"edge node {node_id}", roles=[Role.NODE]), now
        )
        updated = node.model_copy(update={"key_id": key.key_id, "key_rotated_at": now})
        try:
            self._edge.store.transact(
                [self._edge.node_write(updated, version + 1, version), self._repo.key_write(key, new=True)]
            )
        except ConditionFailed:
            raise Conflict("the node changed meanwhile; retry", code="concurrent_update") from None
        self._keys.revoke(who.project_id, node.key_id, now)
        return NodeKeyRotated(node_id=node_id, node_key=credential)

    def deregister(self, project_id: str, node_id: str, now: datetime) -> EdgeNodeRecord:
        found = self._edge.get_node(project_id, node_id)
        if found is None:
            raise NotFound("edge node", node_id)
        self._edge.store.transact(self._edge.node_delete(project_id, node_id))
        self._owners = {k: v for k, v in self._owners.items() if k[:2] != (project_id, node_id)}
        self._keys.revoke(project_id, found[0].key_id, now)  # drops cached verdicts at once
        self.notifier.changed()  # a held long-poll of that node ends now
        return found[0]

    def report(self, who: Principal, node_id: str, req: StatusReport, now: datetime) -> EdgeNodeStatus:
        self.own(who, node_id)
        status = EdgeNodeStatus(
            project_id=who.project_id,
            node_id=node_id,
            last_heartbeat=now,
            revision=req.revision,
            resources=req.resources,
            deployments=req.deployments,
        )
        self._edge.store.write(self._edge.status_write(status))
        return status

    # --- desired state, by long-poll -------------------------------------------------------------------
    def desired(
        self, who: Principal, node_id: str, if_none_match: str | None, wait_seconds: float
    ) -> tuple[DesiredState | None, bool]:
        """(the node's desired state, held): None when its revision still equals `if_none_match`
        after waiting up to `wait_seconds`. `held` is False when no long-poll slot was free, so
        the answer came at once (the caller then tells the node to come back a little later)."""
        self.own(who, node_id, readers=(Role.MANAGE,))
        current = self._read(who.project_id, node_id)
        if if_none_match is None or etag_of(current) != if_none_match or wait_seconds <= 0:
            return (None if etag_of(current) == if_none_match else current), True
        if not self._slots.acquire(blocking=False):
            return None, False
        try:
            deadline = time.monotonic() + wait_seconds
            while True:
                seen = self.notifier.generation()
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, True
                self.notifier.wait(seen, min(left, self._recheck))
                current = self._read(who.project_id, node_id)
                if etag_of(current) != if_none_match:
                    return current, True
        finally:
            self._slots.release()

    def _read(self, project_id: str, node_id: str) -> DesiredState:
        """One read while a poll is held; a deregistered node (desired state deleted) ends it."""
        found = self._edge.get_desired(project_id, node_id)
        if found is None:
            if self._edge.get_node(project_id, node_id) is None:
                raise NotFound("edge node", node_id)
            return DesiredState(
                project_id=project_id, node_id=node_id, revision=0, assignments=[], updated_at=_EPOCH
            )
        return found[0]


_EPOCH = datetime(1970, 1, 1).astimezone()


def etag_of(desired: DesiredState) -> str:
    return f'"{desired.revision}"'


def online(status: EdgeNodeStatus | None, now: datetime, offline_after: timedelta) -> bool:
    return status is not None and now - status.last_heartbeat <= offline_after
