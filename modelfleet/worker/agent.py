"""The node agent: register, then sync in a loop (heartbeat + route reports → desired
assignments) and reconcile: load what is assigned, unload what is not.

Loads run on a background thread, so heartbeats and serving go on while a model loads. A load
failure marks only that route `failed` (with the loader's message); the node keeps running.
A nudge (POST /_sync) or a finished load triggers the next sync at once.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from modelfleet.core.lifecycle import RoutingState
from modelfleet.runtime.artifacts import fetch_model
from modelfleet.runtime.errors import ModelRuntimeError
from modelfleet.trust import tls_verify
from modelfleet.worker.loaded import LoadedDeployment
from modelfleet.worker.text import TextServing
from schemas.nodes import Assignment, NodeRegister, NodeSync, RouteReport, SyncResponse

log = logging.getLogger(__name__)


@dataclass
class LocalRoute:
    assignment: Assignment
    state: RoutingState = RoutingState.STARTING
    reason: str = ""
    loaded: LoadedDeployment | None = None
    loading: Future[None] | None = field(default=None, repr=False)


def _model_identity(a: Assignment) -> tuple[str, tuple[str, ...], int]:
    return a.model.model_id, tuple(f.sha256 for f in a.model.files), a.threads_per_allocation


class NodeAgent:
    def __init__(
        self,
        registration: NodeRegister,
        control_url: str,
        credential: str,
        model_root: Path,
        verify: ssl.SSLContext | bool | None = None,
    ) -> None:
        self.registration = registration
        self._control = control_url.rstrip("/")
        self._headers = {"authorization": f"Bearer {credential}"}
        self._root = model_root
        self.routes: dict[tuple[str, str], LocalRoute] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loader")
        self._http = httpx.Client(
            timeout=httpx.Timeout(30.0, connect=3.0), verify=tls_verify() if verify is None else verify
        )
        self.interval = 1.0
        self.registered = False

    # --- serving side -----------------------------------------------------------------------------
    def serving(self, uid: str, version_id: str) -> LoadedDeployment | None:
        route = self.routes.get((uid, version_id))
        return route.loaded if route and route.state == RoutingState.STARTED else None

    def loaded_of(self, uid: str) -> list[LoadedDeployment]:
        """Every version of a deployment loaded on this node (started or not)."""
        return [r.loaded for (u, _), r in list(self.routes.items()) if u == uid and r.loaded is not None]

    def nudge(self) -> None:
        self._wake.set()

    # --- loop ---------------------------------------------------------------------------------------
    def run(self) -> None:
        backoff = 0.5
        failures = 0
        while not self._stop.is_set():
            # Cleared before the sync, so a nudge or a finished load during it triggers the next one.
            self._wake.clear()
            try:
                resp = self._sync()
                backoff, failures = 0.5, 0
                self.interval = resp.heartbeat_interval_seconds
                self._reconcile(resp.assignments)
                wait = self.interval
            except (httpx.HTTPError, ValueError) as e:
                failures += 1
                # One miss is routine (a restart, a shutdown); keep serving and say so if it lasts.
                log.log(
                    logging.WARNING if failures >= 3 else logging.INFO,
                    "sync failed (%d in a row), still serving the last state: %s",
                    failures,
                    e,
                )
                wait = backoff * (0.5 + random.random())
                backoff = min(backoff * 2, 10.0)
            self._wake.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._loader.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for route in self.routes.values():
                if route.loaded:
                    route.loaded.close()
            self.routes.clear()
        self._http.close()

    def _sync(self) -> SyncResponse:
        if not self.registered:
            r = self._http.post(
                f"{self._control}/api/v1/nodes",
                headers=self._headers,
                content=self.registration.model_dump_json(),
            )
            r.raise_for_status()
            self.registered = True
            return SyncResponse.model_validate_json(r.content)
        body = NodeSync(routes=self._reports())
        r = self._http.put(
            f"{self._control}/api/v1/nodes/{self.registration.node_id}/sync",
            headers=self._headers,
            content=body.model_dump_json(),
        )
        if r.status_code == 404:
            self.registered = False
            raise ValueError("the control plane does not know this node; registering again")
        r.raise_for_status()
        return SyncResponse.model_validate_json(r.content)

    def _reports(self) -> list[RouteReport]:
        with self._lock:
            return [
                RouteReport(
                    deployment_uid=uid,
                    version_id=vid,
                    routing_state=route.state,
                    current_allocations=route.loaded.allocations
                    if route.loaded and route.state == RoutingState.STARTED
                    else 0,
                    reason=route.reason,
                    stats=route.loaded.stats_snapshot() if route.loaded else None,
                )
                for (uid, vid), route in self.routes.items()
            ]

    def _reconcile(self, assignments: list[Assignment]) -> None:
        desired = {(a.deployment_uid, a.version_id): a for a in assignments}
        with self._lock:
            for key in [k for k in self.routes if k not in desired]:
                gone = self.routes.pop(key)
                if gone.loaded:
                    gone.loaded.close()
                log.info("unloaded %s/%s", gone.assignment.deployment_id, key[1])
            for key, a in desired.items():
                route: LocalRoute | None = self.routes.get(key)
                if route is None or _model_identity(route.assignment) != _model_identity(a):
                    if route is not None and route.loaded:
                        route.loaded.close()
                    route = LocalRoute(assignment=a)
                    self.routes[key] = route
                    route.loading = self._loader.submit(self._load, key, route)
                elif route.loaded is not None:
                    route.loaded.resize(a)
                    route.assignment = a
                else:
                    route.assignment = a

    def _load(self, key: tuple[str, str], route: LocalRoute) -> None:
        a = route.assignment
        try:
            entry = fetch_model(self._root, a.project_id, a.model, self._http)
            loaded = LoadedDeployment.load(a, entry)
            try:
                loaded.text = TextServing.build(a, loaded, entry.parent)
            except BaseException:
                loaded.close()
                raise
        except ModelRuntimeError as e:
            state, reason, loaded_or_none = RoutingState.FAILED, str(e), None
        except Exception as e:  # a loader bug must fail this route, never the node
            log.exception("unexpected error loading %s", a.deployment_id)
            state, reason, loaded_or_none = RoutingState.FAILED, f"{type(e).__name__}: {e}", None
        else:
            state, reason, loaded_or_none = RoutingState.STARTED, "", loaded
        with self._lock:
            if self.routes.get(key) is not route:  # unassigned while loading
                if loaded_or_none:
                    loaded_or_none.close()
                return
            if loaded_or_none is not None:
                loaded_or_none.resize(route.assignment)
            route.loaded, route.state, route.reason = loaded_or_none, state, reason
        log.info("%s/%s %s %s", a.deployment_id, a.version_id, state.value, reason)
        self._wake.set()
