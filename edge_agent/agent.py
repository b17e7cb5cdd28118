"""The edge agent: keeps this device's models in line with its desired state, offline-first.

Start-up serves the last good state from disk before touching the network. A sync thread long-polls
the desired state (ETag + `If-None-Match`), persists it and reconciles: per service, fetch and verify
the model (resumable), load and health-check it beside the old one, swap, keep the previous version
for rollback. A failed activation leaves the old version serving and is reported `failed` with the
reason; a broken transfer is retried (resuming) later. A heartbeat thread reports node status and each
deployment's state. When the control plane is unreachable nothing stops serving; the agent retries with
jittered backoff, and on reconnect it fetches the newest revision straight away (no stale ones between).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from edge_agent.artifacts import ArtifactError, TransferError, discard, fetch_model, verify_model_dir
from edge_agent.control import Backoff, ControlClient, Refused, Unreachable
from edge_agent.serving import Served, Slots, load_and_check
from edge_agent.storage import ActiveModel, AgentStore, Identity
from modelfleet.runtime.errors import ModelLoadError

log = logging.getLogger("edge_agent")


@dataclass
class AgentConfig:
    data_dir: Path
    control_url: str
    token: str | None = None
    name: str = ""
    ca_file: str | None = None
    insecure: bool = False  # only when asked for: TLS is verified by default
    poll_wait: float = 20.0
    heartbeat_interval: float = 10.0
    keep_previous: int = 1  # versions kept on disk for rollback (N-1)
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    request_timeout: float = 10.0  # connect/read timeout of control-plane calls (a long-poll adds its wait)


@dataclass
class Activation:
    """One swap, for whoever audits the agent (the fleet simulation counts them)."""

    service_id: str
    model_id: str
    verified: bool
    at: float


@dataclass
class Phase:
    model_id: str
    state: str  # starting | started | failed
    reason: str = ""


@dataclass
class AgentStats:
    activations: list[Activation] = field(default_factory=list)
    refused: int = 0
    transfer_retries: int = 0


class EdgeAgent:
    def __init__(
        self,
        config: AgentConfig,
        control_transport: httpx.BaseTransport | None = None,
        artifact_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self.store = AgentStore(config.data_dir)
        self.slots = Slots()
        self.control = ControlClient(
            config.control_url,
            config.ca_file,
            config.insecure,
            control_transport,
            timeout=config.request_timeout,
        )
        self._downloads = httpx.Client(timeout=30.0, transport=artifact_transport, follow_redirects=False)
        self.identity: Identity | None = self.store.identity()
        desired, etag = self.store.desired()
        self.desired: dict[str, Any] | None = desired
        self.etag = etag
        self.applied_revision = 0
        self.phases: dict[str, Phase] = {}
        self.failed: dict[tuple[str, str], str] = {}
        self.stats = AgentStats()
        self.connected = False
        self._stop = threading.Event()
        self._report_now = threading.Event()
        self._threads: list[threading.Thread] = []
        self._reconcile_lock = threading.Lock()

    # --- life cycle ---------------------------------------------------------------------------------------
    @property
    def node_id(self) -> str:
        assert self.identity is not None
        return self.identity.node_id

    def register(self) -> Identity:
        """Spend the registration token once; the node key is kept 0600 in the data directory."""
        if self.identity is not None:
            return self.identity
        if not self.config.token:
            raise RuntimeError("not registered yet: give a registration token (--token)")
        doc = self.control.register(self.config.token, self.config.name, resources())
        self.identity = Identity(doc["node_id"], doc["project_id"], doc["node_key"], self.config.control_url)
        self.store.save_identity(self.identity)
        return self.identity

    def start(self) -> None:
        """Serve the last good state from disk, then start syncing (registration retried offline)."""
        self.restore()
        for target, name in ((self._sync_loop, "edge-sync"), (self._heartbeat_loop, "edge-heartbeat")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def request_stop(self) -> None:
        """Ask the threads to end (returns at once; `stop` waits for them)."""
        self._stop.set()
        self._report_now.set()

    def stop(self) -> None:
        self.request_stop()
        for t in self._threads:
            t.join(timeout=self.config.poll_wait + 15)
        self.control.close()
        self._downloads.close()

    def restore(self) -> None:
        """Load what served before the restart, from verified files on disk (no network)."""
        active = self.store.active()
        for sid, m in list(active.items()):
            for candidate in [m, *(ActiveModel(**{**p, "previous": []}) for p in m.previous)]:
                try:
                    path = self.store.model_dir(candidate.model_id)
                    verify_model_dir(path, candidate.files)
                    model = load_and_check(candidate.format, path, candidate.entry_file, candidate.signature)
                except (ArtifactError, ModelLoadError) as e:
                    log.warning("cannot restore %s of %s: %s", candidate.model_id, sid, e)
                    continue
                self.slots.swap(Served(sid, candidate.name, candidate.model_id, model))
                self.phases[sid] = Phase(candidate.model_id, "started")
                break
            else:
                del active[sid]
        self.store.save_active(active)

    # --- sync ----------------------------------------------------------------------------------------------
    def _sync_loop(self) -> None:
        backoff = Backoff(self.config.backoff_base, self.config.backoff_cap)
        pending = True  # reconcile once after the first successful poll (desired may be on disk)
        while not self._stop.is_set():
            try:
                identity = self.register()
                if not self.control.has_key:
                    self.control.use_key(identity.node_key)
                desired, etag, retry_after = self.control.poll(
                    self.node_id, self.etag, 0.0 if pending else self.config.poll_wait
                )
                self.connected = True
                backoff.reset()
                if desired is not None:
                    self.desired, self.etag = desired, etag
                    self.store.save_desired(desired, etag)
                if desired is not None or pending:
                    pending = self.reconcile()
                    self._report_now.set()
                if pending:
                    self.stats.transfer_retries += 1
                    self._stop.wait(backoff.next())
                elif retry_after:
                    self._stop.wait(backoff.jitter(retry_after))
            except Unreachable as e:
                self.connected = False
                log.info("control plane unreachable (%s); serving the last good state", e)
                self._stop.wait(backoff.next())
            except Refused as e:
                self.connected = False
                log.warning("control plane refused the node: %s", e)
                self._stop.wait(backoff.next())
            except Exception:  # never let the sync thread die: the device keeps serving
                log.exception("sync failed")
                self._stop.wait(backoff.next())

    def reconcile(self) -> bool:
        """Bring the served models to the desired state; True when a transfer must be retried."""
        with self._reconcile_lock:
            return self._reconcile()

    def _reconcile(self) -> bool:
        desired = self.desired or {"revision": 0, "assignments": []}
        wanted = {a["service_id"]: a for a in desired["assignments"]}
        active = self.store.active()
        pending = False
        for sid, a in wanted.items():
            outcome = self._activate(sid, a, active)
            pending = pending or outcome
        for sid in [s for s in active if s not in wanted]:
            self.slots.remove(sid)
            del active[sid]
        for sid in [s for s in self.phases if s not in wanted]:
            del self.phases[sid]
        self.failed = {k: v for k, v in self.failed.items() if wanted.get(k[0], {}).get("model_id") == k[1]}
        self.store.save_active(active)
        keep = {m.model_id for m in active.values()} | {
            p["model_id"] for m in active.values() for p in m.previous
        }
        self.store.keep_only(keep)
        if not pending:
            self.applied_revision = int(desired["revision"])
        return pending

    def _activate(self, sid: str, a: dict[str, Any], active: dict[str, ActiveModel]) -> bool:
        model_id = a["model_id"]
        served = self.slots.by_service().get(sid)
        if served is not None and served.model_id == model_id and served.name == a["name"]:
            self.phases[sid] = Phase(model_id, "started")
            return False
        if (sid, model_id) in self.failed:
            self.phases[sid] = Phase(model_id, "failed", self.failed[(sid, model_id)])
            return False
        self.phases[sid] = Phase(model_id, "starting")
        self._report_now.set()
        digests = {f["name"]: f["sha256"] for f in a["files"]}
        try:
            path = fetch_model(model_id, a["files"], self.store.downloads, self.store.models, self._downloads)
            verify_model_dir(path, digests)  # again, right before the load
            model = load_and_check(a["format"], path, a["entry_file"], a.get("signature"))
        except TransferError as e:
            self.phases[sid] = Phase(model_id, "starting", str(e))
            if e.stale_url:
                self.etag = None  # fetch the desired state again for fresh links
            return True
        except (ArtifactError, ModelLoadError) as e:
            reason = str(e)
            if isinstance(e, ArtifactError):
                self.stats.refused += 1
                discard(self.store.downloads, self.store.models, model_id)
            self.failed[(sid, model_id)] = reason
            self.phases[sid] = Phase(model_id, "failed", reason)
            log.warning(
                "activation of %s for %s failed (still serving the old version): %s", model_id, sid, reason
            )
            return False
        self.slots.swap(Served(sid, a["name"], model_id, model))
        self.stats.activations.append(Activation(sid, model_id, verified=True, at=time.monotonic()))
        before = active.get(sid)
        previous: list[dict[str, Any]] = []
        if before is not None and before.model_id != model_id:
            previous = [{**asdict(before), "previous": []}, *before.previous]
        active[sid] = ActiveModel(
            service_id=sid,
            name=a["name"],
            model_id=model_id,
            format=a["format"],
            entry_file=a["entry_file"],
            files=digests,
            signature=a.get("signature"),
            previous=previous[: self.config.keep_previous],
        )
        self.store.save_active(active)
        self.phases[sid] = Phase(model_id, "started")
        return False

    # --- reports --------------------------------------------------------------------------------------------
    def status_body(self) -> dict[str, Any]:
        serving = self.slots.by_service()
        return {
            "revision": self.applied_revision,
            "resources": resources(self.config.data_dir),
            "deployments": [
                {
                    "service_id": sid,
                    "model_id": p.model_id,
                    "state": p.state,
                    "reason": p.reason[:4000],
                    "serving_model_id": serving[sid].model_id if sid in serving else None,
                }
                for sid, p in sorted(self.phases.items())
            ],
        }

    def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            self._report_now.wait(self.config.heartbeat_interval)
            self._report_now.clear()
            if self._stop.is_set() or self.identity is None or not self.control.has_key:
                continue
            try:
                self.control.report(self.node_id, self.status_body())
            except (Unreachable, Refused) as e:
                log.debug("status report failed: %s", e)

    def rotate_key(self) -> None:
        assert self.identity is not None
        key = self.control.rotate_key(self.node_id)
        self.identity = Identity(
            self.identity.node_id, self.identity.project_id, key, self.identity.control_url
        )
        self.store.save_identity(self.identity)
        self.control.use_key(key)

    def status(self) -> dict[str, Any]:
        return {
            "node_id": self.identity.node_id if self.identity else None,
            "connected": self.connected,
            "desired_revision": (self.desired or {}).get("revision", 0),
            "applied_revision": self.applied_revision,
            "serving": {s.name: s.model_id for s in self.slots.by_service().values()},
            "phases": {sid: asdict(p) for sid, p in self.phases.items()},
            "activations": [a.model_id for a in self.stats.activations],
            "refused": self.stats.refused,
        }


def resources(data_dir: Path | None = None) -> dict[str, Any]:
    disk = shutil.disk_usage(data_dir or Path.cwd())
    return {
        "cpu_count": os.cpu_count() or 1,
        "memory_bytes": int(psutil.virtual_memory().total),
        "disk_free_bytes": int(disk.free),
        "load_1m": float(os.getloadavg()[0]),
    }
