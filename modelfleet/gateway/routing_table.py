"""The gateway's in-memory routing tables.

Inference never reads DynamoDB per request: a deployment's routes are loaded once, kept in
memory, and dropped when a state-change event about it (or about any node) arrives on the
gateway's SQS queue (subscribed to the events topic). A deployment with a version that has no
ready route is re-read at most every `recheck_seconds`, so a route that just became ready is
found quickly even before its event arrives.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field

import orjson
from starlette.concurrency import run_in_threadpool

from modelfleet.adapters.errors import AdapterError
from modelfleet.adapters.sqs import QueueConsumer
from modelfleet.control.repository import Repository
from modelfleet.core.lifecycle import DeploymentState, RoutingState
from modelfleet.core.routing import WrrState, pick_route, pick_weighted
from schemas.models import ModelFormat
from schemas.tensors import Signature

log = logging.getLogger(__name__)


@dataclass
class VersionRoutes:
    version_id: str
    model_id: str
    weight: int
    format: ModelFormat | None
    signature: Signature | None
    ready: dict[str, int]  # node address -> current allocations (started routes only)
    wrr: WrrState = field(default_factory=lambda: WrrState(current={}))


@dataclass
class DeploymentEntry:
    project_id: str
    deployment_id: str
    uid: str
    state: DeploymentState
    reason: str
    versions: list[VersionRoutes]
    loaded_at: float
    wrr: WrrState = field(default_factory=lambda: WrrState(current={}))

    def version(self, version_id: str) -> VersionRoutes | None:
        return next((v for v in self.versions if v.version_id == version_id), None)

    def has_ready(self) -> bool:
        return any(v.ready for v in self.versions)

    def fully_ready(self) -> bool:
        return all(v.ready for v in self.versions if v.weight > 0)

    def pick(self, version_id: str | None = None) -> tuple[VersionRoutes, str] | None:
        """Choose a version by weight (or the one asked for), then a node by allocations."""
        if version_id is not None:
            chosen = self.version(version_id)
            if chosen is None or not chosen.ready:
                return None
        else:
            weights = {v.version_id: v.weight for v in self.versions if v.ready}
            if not weights:
                return None
            if len(weights) == 1:
                key: str | None = next(iter(weights))
            else:
                key, self.wrr = pick_weighted(weights, self.wrr)
            chosen = self.version(key or "")
            if chosen is None:
                return None
        if len(chosen.ready) == 1:
            return chosen, next(iter(chosen.ready))
        url, chosen.wrr = pick_route(chosen.ready, chosen.wrr)
        return (chosen, url) if url else None


class RoutingTables:
    def __init__(
        self,
        repo: Repository,
        recheck_seconds: float = 0.25,
        max_age_seconds: float = 30.0,
        min_reload_seconds: float = 0.02,
    ) -> None:
        self._repo = repo
        self._recheck = recheck_seconds
        self._max_age = max_age_seconds
        self._min_reload = min_reload_seconds
        self._generation = 0  # bumped by every invalidation
        self._inflight: dict[tuple[str, str], asyncio.Future[DeploymentEntry | None]] = {}
        self._entries: dict[tuple[str, str], DeploymentEntry] = {}
        self._by_uid: dict[str, tuple[str, str]] = {}
        self._node_urls: dict[str, str] = {}
        self._node_urls_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()

    def deployment_of_model(self, project_id: str, model_id: str) -> str | None:
        """The deployment serving `model_id` (Elasticsearch lets `_infer` name the model): a
        started one first. Reads DynamoDB; callers cache the answer briefly."""
        rank = {DeploymentState.STARTED: 0, DeploymentState.STARTING: 1, DeploymentState.PENDING: 2}
        serving = [
            d
            for d in self._repo.list_deployments(project_id)
            if d.state in rank and any(v.model_id == model_id for v in d.versions)
        ]
        serving.sort(key=lambda d: (rank[d.state], d.created_at))
        return serving[0].deployment_id if serving else None

    async def get(self, project_id: str, deployment_id: str) -> DeploymentEntry | None:
        key = (project_id, deployment_id)
        entry = self._entries.get(key)
        if entry is not None:
            age = time.monotonic() - entry.loaded_at
            if age <= self._max_age and (entry.fully_ready() or age <= self._recheck):
                return entry
        return await self.reload(key)

    async def reload(self, key: tuple[str, str]) -> DeploymentEntry | None:
        """Read the deployment's routes now. A load that an invalidation overtook is used for this
        request but not kept, so stale routes never outlive the event that retired them."""
        pending = self._inflight.get(key)
        if pending is not None:  # single flight: a burst of requests shares one read
            return await asyncio.shield(pending)
        future: asyncio.Future[DeploymentEntry | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            entry = await self._load_and_keep(key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as e:
            future.set_exception(e)
            future.exception()  # marked retrieved; waiters re-raise it
            raise
        else:
            future.set_result(entry)
            return entry
        finally:
            del self._inflight[key]

    async def _load_and_keep(self, key: tuple[str, str]) -> DeploymentEntry | None:
        generation = self._generation
        entry = await run_in_threadpool(self._load, *key)
        if entry is None:
            self._entries.pop(key, None)
            return None
        if generation == self._generation:
            self._entries[key] = entry
            self._by_uid[entry.uid] = key
        return entry

    async def refresh_if_unready(self, entry: DeploymentEntry) -> DeploymentEntry:
        """For a request that found no ready route: re-read once, unless that just happened."""
        if time.monotonic() - entry.loaded_at < self._min_reload:
            return entry
        return await self.reload((entry.project_id, entry.deployment_id)) or entry

    def _nodes(self) -> dict[str, str]:
        """Node id -> the address inference goes to: its data port, or HTTP for nodes without one."""
        if time.monotonic() - self._node_urls_at > 5.0:
            self._node_urls = {n.node_id: n.data_url or n.url.rstrip("/") for n in self._repo.list_nodes()}
            self._node_urls_at = time.monotonic()
        return self._node_urls

    def _load(self, project_id: str, deployment_id: str) -> DeploymentEntry | None:
        d = self._repo.get_deployment(project_id, deployment_id)
        if d is None:
            return None
        routes = self._repo.routes(d.uid)
        nodes = self._nodes()
        if any(r.node_id not in nodes for r in routes):
            self._node_urls_at = 0.0
            nodes = self._nodes()
        versions = []
        for v in d.versions:
            model = self._repo.get_model(project_id, v.model_id)
            ready = {
                nodes[r.node_id]: max(r.current_allocations, 1)
                for r in routes
                if r.version_id == v.version_id
                and r.routing_state == RoutingState.STARTED
                and r.node_id in nodes
            }
            versions.append(
                VersionRoutes(
                    version_id=v.version_id,
                    model_id=v.model_id,
                    weight=v.weight,
                    format=model.format if model else None,
                    signature=model.signature if model else None,
                    ready=ready,
                )
            )
        return DeploymentEntry(
            project_id, deployment_id, d.uid, d.state, d.reason, versions, time.monotonic()
        )

    # --- invalidation -----------------------------------------------------------------------------
    def invalidate_uid(self, uid: str) -> None:
        self._generation += 1
        key = self._by_uid.pop(uid, None)
        if key is not None:
            self._entries.pop(key, None)

    def invalidate_all(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._by_uid.clear()
        self._node_urls_at = 0.0

    def drop_node(self, address: str) -> None:
        """A node could not be reached: stop routing to it until the next reload."""
        for entry in self._entries.values():
            for v in entry.versions:
                v.ready.pop(address, None)

    def start_listener(self, consumer: QueueConsumer) -> None:
        self._loop = asyncio.get_running_loop()
        threading.Thread(
            target=self._listen, args=(consumer,), name="routing-invalidations", daemon=True
        ).start()

    def stop_listener(self) -> None:
        self._stop.set()

    def _listen(self, consumer: QueueConsumer) -> None:
        while not self._stop.is_set():
            try:
                messages = consumer.receive(wait_seconds=2)
            except AdapterError as e:
                if self._stop.is_set():
                    return
                log.warning("invalidation feed unavailable: %s", e)
                self._stop.wait(1.0)
                continue
            for m in messages:
                self._apply(m.body)
            consumer.delete(messages)

    def _apply(self, body: str) -> None:
        try:
            envelope = orjson.loads(body)
            event = orjson.loads(envelope["Message"]) if "Message" in envelope else envelope
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        loop = self._loop
        if loop is None:
            return
        if str(event.get("type", "")).startswith("node."):
            loop.call_soon_threadsafe(self.invalidate_all)
        else:
            loop.call_soon_threadsafe(self.invalidate_uid, str(event.get("aggregate_id", "")))
