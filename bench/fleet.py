"""Fleet simulation: many edge agents (in-process, each with its own directory) against the real local
platform. `python -m bench.fleet [--nodes 100] [--json fleet-results.json]`

1. An edge service on every node (v1); every agent downloads through a link that cuts the first
   transfer of each file mid-file, so each download resumes.
2. 30% of the nodes go offline (control plane and storage unreachable); two successive revisions (v2,
   v3) roll out in waves meanwhile; then they come back.
3. A revision that fails its health check rolls out with abort criteria: it aborts and rolls back.

Reported: nodes on the latest revision; activations of a partial or unverified artifact (an audit of
every activation against the registry's digests; must be 0); the stale revision v2 activated by nodes
that were away (0: they converge straight to v3); the serving gap during a swap (largest interval
between successful local requests on one agent while it swaps, and failed requests); rollout times;
the abort's result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from edge_agent.agent import AgentConfig, EdgeAgent
from edge_agent.server import serve
from modelfleet.client import Client
from modelfleet.local.launcher import LaunchOptions, launch, wait_for
from tests.edge_support import oip_body, scale_model

ADMIN_KEY = "mfk_fleetadmin:fleet-admin-secret-0123456789abcdef"
OFFLINE_AFTER = 20.0


class Link(httpx.BaseTransport):
    """One device's network: `up` false makes every request fail to connect; `cut_first` breaks the
    first transfer of each URL path in the middle (downloads only)."""

    def __init__(self, cut_first: bool = False) -> None:
        self._inner = httpx.HTTPTransport(retries=0)
        self.up = True
        self._cut_first = cut_first
        self._seen: set[str] = set()
        self.cuts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            raise httpx.ConnectError("network is down", request=request)
        response = self._inner.handle_request(request)
        if self._cut_first and request.url.path not in self._seen and "range" not in request.headers:
            self._seen.add(request.url.path)
            self.cuts += 1
            response.stream = _Cut(response.stream, int(response.headers.get("content-length", "0")) // 2)
        return response

    def close(self) -> None:
        self._inner.close()


class _Cut(httpx.SyncByteStream):
    def __init__(self, inner: Any, after: int) -> None:
        self._inner, self._after = inner, after

    def __iter__(self):  # type: ignore[no-untyped-def]
        sent = 0
        for chunk in self._inner:
            if sent + len(chunk) > self._after:
                yield chunk[: self._after - sent]
                raise httpx.RemoteProtocolError("connection cut mid-file")
            sent += len(chunk)
            yield chunk

    def close(self) -> None:
        self._inner.close()


@dataclass
class Device:
    agent: EdgeAgent
    control: Link
    storage: Link


@dataclass
class Results:
    nodes: int = 0
    offline: int = 0
    figures: dict[str, Any] = field(default_factory=dict)


def _wait(what: str, check: Callable[[], Any], timeout: float) -> float:
    start = time.monotonic()
    wait_for(what, check, timeout=timeout, interval=0.2)
    return time.monotonic() - start


def run(n_nodes: int, work: Path) -> Results:
    res = Results(nodes=n_nodes)
    env = {"MODELFLEET_EDGE_OFFLINE_AFTER": str(OFFLINE_AFTER), "MODELFLEET_EDGE_LONGPOLL_SLOTS": "30"}
    platform = launch(work / "platform", ADMIN_KEY, LaunchOptions(nodes=0, env=env), timeout=120)
    devices: list[Device] = []
    try:
        c = Client(platform.url, ADMIN_KEY, timeout=120)
        models = {}
        digests: dict[str, dict[str, str]] = {}
        for label, factor, poisoned in (
            ("v1", 1.0, False),
            ("v2", 2.0, False),
            ("v3", 3.0, False),
            ("bad", 9.0, True),
        ):
            path = scale_model(work / f"{label}.onnx", factor, poisoned, pad_bytes=2 * 1024 * 1024)
            m = c.register_model(path, name=f"fleet-{label}", format="onnx")
            models[label] = m["model_id"]
            digests[m["model_id"]] = {f["name"]: f["sha256"] for f in m["files"]}
        node_ids = [f"sim-{i:03d}" for i in range(n_nodes)]
        for node_id in node_ids:  # every device registers first, then all start
            token = c.request("POST", "/api/v1/edge/registration-tokens", json={"node_id": node_id})["token"]
            control, storage = Link(), Link(cut_first=True)
            agent = EdgeAgent(
                AgentConfig(
                    data_dir=work / "devices" / node_id,
                    control_url=platform.url,
                    token=token,
                    name=node_id,
                    poll_wait=20.0,
                    heartbeat_interval=5.0,
                    backoff_cap=3.0,
                    request_timeout=30.0,
                ),
                control_transport=control,
                artifact_transport=storage,
            )
            wait_for(f"{node_id} to register", partial(_try, agent.register), timeout=120, interval=1.0)
            devices.append(Device(agent, control, storage))
        _say(f"{n_nodes} devices registered")
        for d in devices:
            d.agent.start()
        threading.Thread(
            target=serve, args=(devices[0].agent, "127.0.0.1", 0, work / "probe.json"), daemon=True
        ).start()

        def on(model: str, group: list[Device]) -> int:
            return sum(d.agent.status()["serving"].get("fleet") == models[model] for d in group)

        created = c.request(
            "POST",
            "/api/v1/edge/services",
            json={"service_name": "fleet", "config": [{"model_id": models["v1"], "nodes": node_ids}]},
        )
        sid = created["service_id"]
        res.figures["initial_deploy_s"] = round(
            _wait("every node on v1", lambda: on("v1", devices) == n_nodes, timeout=600), 1
        )

        # serving gap on the probe device while it swaps to v2 (it stays online)
        probe_port = wait_for(
            "the probe",
            lambda: (
                json.loads((work / "probe.json").read_text())["port"]
                if (work / "probe.json").exists()
                else None
            ),
        )
        gap = _Hammer(f"http://127.0.0.1:{probe_port}/v2/models/fleet/infer")
        gap.start()

        _say(f"every node serves v1 after {res.figures['initial_deploy_s']}s")
        rng = random.Random(7)
        away = rng.sample(devices[1:], k=round(0.3 * n_nodes))
        res.offline = len(away)
        for d in away:
            d.control.up = d.storage.up = False
        stay = [d for d in devices if d not in away]
        _wait(
            "the away nodes to show offline",
            lambda: (
                sum(n["state"] == "offline" for n in c.request("GET", "/api/v1/edge/nodes")["nodes"])
                >= len(away)
            ),
            timeout=60,
        )

        for label in ("v2", "v3"):
            start = time.monotonic()
            c.request(
                "PUT",
                f"/api/v1/edge/services/{sid}",
                json={
                    "config": [{"model_id": models[label], "nodes": node_ids}],
                    "rollout": {"max_unavailable": max(1, n_nodes // 10)},
                },
            )
            done = _rollout(c, sid, timeout=600)
            res.figures[f"rollout_{label}_s"] = round(time.monotonic() - start, 1)
            res.figures[f"rollout_{label}"] = _tally(done)
            if label == "v2":
                wait_for(
                    "the probe to swap",
                    lambda: devices[0].agent.status()["serving"]["fleet"] == models["v2"],
                    timeout=120,
                )
                time.sleep(0.5)  # successes after the swap
                gap.stop()
                swap_at = next(a.at for a in devices[0].agent.stats.activations if a.model_id == models["v2"])
                res.figures["swap_serving_gap_ms"] = round(gap.gap_around(swap_at), 2)
                res.figures["largest_gap_between_requests_ms"] = round(gap.max_gap_ms, 1)
                res.figures["median_gap_between_requests_ms"] = round(gap.median_gap_ms(), 2)
                res.figures["swap_failed_requests"] = gap.failures
                res.figures["swap_requests"] = gap.ok
        res.figures["online_nodes_on_v3"] = on("v3", stay)
        _say("two revisions rolled out with 30% away; bringing them back")

        start = time.monotonic()
        for d in away:
            d.control.up = d.storage.up = True
        _wait("every node on v3", lambda: on("v3", devices) == n_nodes, timeout=600)
        res.figures["reconnect_converge_s"] = round(time.monotonic() - start, 1)
        res.figures["nodes_on_latest"] = on("v3", devices)
        res.figures["away_nodes_that_activated_stale_v2"] = sum(
            models["v2"] in d.agent.status()["activations"] for d in away
        )

        _say(f"every node on v3, {res.figures['reconnect_converge_s']}s after reconnecting; now the abort")
        # a revision that fails its health check, with abort criteria
        start = time.monotonic()
        c.request(
            "PUT",
            f"/api/v1/edge/services/{sid}",
            json={
                "config": [{"model_id": models["bad"], "nodes": node_ids}],
                "rollout": {"max_unavailable": 5, "abort_failure_percent": 20, "abort_min_nodes": 3},
            },
        )
        done = _rollout(c, sid, timeout=300)
        res.figures["abort"] = {
            "state": done["state"],
            "seconds": round(time.monotonic() - start, 1),
            **_tally(done),
            "reason": done["reason"],
        }
        _wait("every node back on v3", lambda: on("v3", devices) == n_nodes, timeout=300)
        res.figures["abort"]["nodes_on_v3_after"] = on("v3", devices)
        res.figures["abort"]["bad_activations"] = sum(
            models["bad"] in d.agent.status()["activations"] for d in devices
        )

        res.figures.update(_audit(devices, digests))
        res.figures["downloads_cut_mid_file"] = sum(d.storage.cuts for d in devices)
        _wait(
            "the service to run",
            lambda: c.request("GET", f"/api/v1/edge/services/{sid}")["status"] == "running",
            timeout=60,
        )
        res.figures["service_status"] = c.request("GET", f"/api/v1/edge/services/{sid}")["status"]
        return res
    finally:
        for d in devices:
            d.agent.request_stop()
        for d in devices:
            d.agent.stop()
        platform.stop()


def _try(action: Callable[[], Any]) -> bool:
    try:
        action()
    except Exception as e:  # the platform is busy: try again
        _say(f"retrying: {e}")
        return False
    return True


def _say(text: str) -> None:
    print(f"[fleet {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _rollout(c: Client, sid: str, timeout: float) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        r = c.request("GET", f"/api/v1/edge/services/{sid}")["rollout"]
        return r if r["state"] != "in_progress" else None

    result: dict[str, Any] = wait_for("the rollout", done, timeout=timeout, interval=0.5)
    return result


def _tally(rollout: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"state": rollout["state"], "waves": max(e["wave"] for e in rollout["entries"])}
    for e in rollout["entries"]:
        out[e["progress"]] = out.get(e["progress"], 0) + 1
    return out


def _audit(devices: list[Device], digests: dict[str, dict[str, str]]) -> dict[str, int]:
    """Every activation must be of a model whose files were complete and matched the registry: each
    agent's served and kept models are re-hashed on disk, and activations are counted against them."""
    activations = bad = 0
    for d in devices:
        activations += len(d.agent.stats.activations)
        bad += sum(not a.verified for a in d.agent.stats.activations)
        for model_dir in d.agent.store.models.iterdir():
            for name, sha in digests.get(model_dir.name, {}).items():
                f = model_dir / name
                if not f.is_file() or hashlib.sha256(f.read_bytes()).hexdigest() != sha:
                    bad += 1
        for a in d.agent.stats.activations:
            if a.model_id not in digests:
                bad += 1
    return {"activations": activations, "partial_or_unverified_activations": bad}


class _Hammer:
    """Requests one local model back to back; the largest gap between successes is the serving gap."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.ok = self.failures = 0
        self.max_gap_ms = 0.0
        self.successes: list[float] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        body = oip_body(np.ones((1, 4), np.float32))
        last = None
        with httpx.Client(timeout=10) as h:
            while not self._stop.is_set():
                try:
                    r = h.post(self._url, json=body)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                now = time.monotonic()
                if ok:
                    self.ok += 1
                    self.successes.append(now)
                    if last is not None:
                        self.max_gap_ms = max(self.max_gap_ms, (now - last) * 1000)
                    last = now
                else:
                    self.failures += 1

    def gap_around(self, at: float) -> float:
        """Time between the last success before `at` and the first one after it (ms)."""
        before = max((t for t in self.successes if t <= at), default=at)
        after = min((t for t in self.successes if t > at), default=at)
        return (after - before) * 1000

    def median_gap_ms(self) -> float:
        gaps = np.diff(np.asarray(self.successes))
        return float(np.median(gaps) * 1000) if gaps.size else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # agents warn on every refused activation; the figures say it
    work = Path(tempfile.mkdtemp(prefix="fleet-sim-"))
    try:
        res = run(args.nodes, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    doc = {"nodes": res.nodes, "offline_during_revisions": res.offline, **res.figures}
    print(json.dumps(doc, indent=1))
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))
    ok = (
        doc.get("partial_or_unverified_activations") == 0
        and doc.get("nodes_on_latest") == res.nodes
        and doc.get("abort", {}).get("state") == "aborted"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
