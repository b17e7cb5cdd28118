"""The measuring phases of one benchmark run: memory, and the figure-by-figure load runs (raw
floor, peer, modelfleet with batching off and on, in each deployment shape)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import numpy as np

from bench.load import LoadResult, run_wrk
from bench.models import BenchModel
from bench.platform import Platform, deploy_and_wait, hosting_nodes, node_stats, remove
from bench.raw import batched, run_p50_ms
from modelfleet.client import Client
from modelfleet.local.launcher import wait_for

CONCURRENCIES = (1, 16)
MEMORY_DRIVE_SECONDS = 2


def _default_batching_on() -> dict[str, dict[str, Any]]:
    return {
        "digits": {"max_batch_size": 32, "max_batch_delay_ms": 0.0},
        "minilm": {"max_batch_size": 32, "max_batch_delay_ms": 0.0},
    }


@dataclass(frozen=True)
class Shape:
    """A deployment shape: allocations x threads per allocation."""

    allocations: int
    threads_per_allocation: int

    @property
    def label(self) -> str:
        return f"{self.allocations}x{self.threads_per_allocation}"


def _default_latency_shapes() -> dict[str, Shape]:
    return {"minilm": Shape(1, 2)}


@dataclass(frozen=True)
class ServeConfig:
    """How modelfleet serves each model in the load runs; every row names its shape.

    `throughput` (2 allocations x 1 thread, one allocation per core) serves every model's c=16
    rows against the peer: two single-threaded runs side by side lose less to the other processes
    of a loaded 2-core machine than one 2-thread run.

    `latency` shapes serve a model's c=1 rows and its batching gain and p95 bound. For MiniLM it
    is 1 allocation x 2 threads, the deployment a user picks for latency: each request gets the
    same two cores the peer's onnxruntime session uses (its default intra-op threads), where
    2 x 1 gives a lone request one core. It is also where dynamic batching pays most: a batch
    keeps both threads busy, a single row parallelises poorly (stack-facts: 2 threads take a row
    from 9.4 to 7.7 ms but 32 rows from 166 to 102 ms). Models without one (digits, ~10 us a run,
    where threads change nothing) use `throughput` for every row.

    Batching on: `max_batch_size` 32 and no delay for both models. With no delay a free
    allocation takes everything queued at that moment, and waits briefly for its share of the
    requests recently in flight (batcher.py), so under load batches hold nearly all 16 requests,
    and an idle deployment adds no latency. A delay only helps when the queue is short, i.e. at
    low concurrency, where it costs its full length: on MiniLM (2x1, before the share wait), 2 ms
    and 5 ms added 3 and 7 ms to the c=1 p50 and gave no more c=16 throughput than 0 ms (three
    interleaved rounds: 0 ms 173, 2 ms 163, 5 ms 161, off 133 req/s).
    """

    throughput: Shape = Shape(2, 1)
    latency: dict[str, Shape] = field(default_factory=_default_latency_shapes)
    batching_off: dict[str, Any] = field(
        default_factory=lambda: {"max_batch_size": 1, "max_batch_delay_ms": 0.0}
    )
    batching_on: dict[str, dict[str, Any]] = field(default_factory=_default_batching_on)

    def latency_shape(self, model: str) -> Shape:
        return self.latency.get(model, self.throughput)

    def shapes(self, model: str) -> list[Shape]:
        """The shapes `model` is deployed in: the latency shape first."""
        return list(dict.fromkeys([self.latency_shape(model), self.throughput]))

    def runs(self, model: str) -> list[tuple[int, Shape]]:
        """(concurrency, shape) of each modelfleet figure: c=1 in the latency shape, c=16 in each."""
        return [(1, self.latency_shape(model))] + [(16, shape) for shape in self.shapes(model)]

    def spec(self, model: str, mode: str, shape: Shape) -> dict[str, Any]:
        batching = self.batching_off if mode == "off" else self.batching_on[model]
        return {
            "allocations": shape.allocations,
            "threads_per_allocation": shape.threads_per_allocation,
            **batching,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Timings:
    """Whole seconds (wrk's unit) per measured run and per discarded warm-up."""

    duration_s: int
    warmup_s: int


def raw_floor(m: BenchModel, shapes: list[Shape]) -> dict[str, float]:
    """In-process `session.run` p50 of one row with onnxruntime's default threads (what the peer
    uses) and with each shape's threads per allocation (`t1_p50_ms`, `t2_p50_ms`, ...)."""
    out = {"p50_ms": run_p50_ms(m.path, m.inputs)}
    for threads in sorted({s.threads_per_allocation for s in shapes}):
        out[f"t{threads}_p50_ms"] = run_p50_ms(m.path, m.inputs, threads=threads)
    return out


def raw_batches(m: BenchModel, formed: dict[str, dict[str, Any]], shapes: list[Shape]) -> dict[str, float]:
    """In-process `session.run` p50 of the batches modelfleet formed with batching on at c=16,
    per shape (`<shape>_batch_p50_ms` for the average batch size, rounded), and of one row on the
    same threads taken as many times (`<shape>_rows_p50_ms`): the per-row gain a batch of that
    size can give at most. Only for shapes whose batches held more than one request."""
    out: dict[str, float] = {}
    for shape in shapes:
        size = round(formed.get(f"{shape.label}:c16", {}).get("average_batch", 0.0))
        if size < 2:
            continue
        threads = shape.threads_per_allocation
        out[f"{shape.label}_batch_size"] = size
        out[f"{shape.label}_batch_p50_ms"] = run_p50_ms(
            m.path, batched(m.inputs, size), threads=threads, seconds=2.0, warmup=3
        )
        out[f"{shape.label}_rows_p50_ms"] = size * run_p50_ms(m.path, m.inputs, threads=threads)
    return out


def batch_counters(before: dict[str, Any], after: dict[str, Any], deployment: str) -> dict[str, Any]:
    """What the nodes' counters say about one run of `deployment`: model runs, the requests they
    ran, the average batch size, and a batch's run time as the node timed it: the average, and
    the 95th percentile over requests (each request counts its batch's run time once), read from
    the runs the node keeps."""
    runs = requests = 0
    times: list[float] = []
    sizes: list[int] = []
    for route, stats in after.items():
        if route.split("/")[0] != deployment:
            continue
        new = stats["batches"] - before.get(route, {}).get("batches", 0)
        runs += new
        requests += stats["batched_requests"] - before.get(route, {}).get("batched_requests", 0)
        recent = stats["recent_runs"][-new:] if new > 0 else []
        sizes += [int(n) for n, _ in recent]
        times += [float(t) for _, t in recent]
    per_request = np.repeat(np.asarray(times), np.asarray(sizes, dtype=np.int64)) if times else None
    return {
        "batches": runs,
        "requests": requests,
        "average_batch": requests / runs if runs else 0.0,
        "batch_run_ms": float(np.mean(times)) if times else 0.0,
        "batch_run_p95_ms": float(np.percentile(per_request, 95)) if per_request is not None else 0.0,
    }


def _summary(r: LoadResult) -> str:
    state = "ok" if r.ok else f"FAILED (non-2xx {r.non_2xx}, socket {r.socket_errors}) {r.error[:200]}"
    return (
        f"  {r.label:<30} p50 {r.p50_ms:8.2f} ms  p95 {r.p95_ms:8.2f} ms  p99 {r.p99_ms:8.2f} ms"
        f"  {r.rps:8.0f} req/s  {state}"
    )


def wait_until_serving(url: str, body: bytes, key: str, timeout: float = 30.0) -> None:
    """The gateway may learn of a started deployment a moment later: wait for the first 200."""
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    wait_for(
        f"{url} to answer 200",
        lambda: httpx.post(url, content=body, headers=headers, timeout=30).status_code == 200,
        timeout,
    )


def memory_phase(platform: Platform, minilm: BenchModel, model_id: str) -> dict[str, Any]:
    """Node RSS growth for MiniLM with 1 allocation, and with 4 allocations on a fresh node.

    Each deployment's growth is measured against its own node's RSS before anything was deployed,
    after driving it with 8 concurrent requests so every allocation thread has run. With 4
    processors per node, the 4-allocation deployment cannot go to the node holding the first one.
    """
    key = platform.admin_key
    headers = {"Authorization": f"Bearer {key}"}
    with platform.client() as c:
        baseline = {n: platform.node_rss(n) for n in platform.node_pids()}
        out: dict[str, Any] = {"baseline_rss": baseline, "model_bytes": minilm.size_bytes}
        for allocations in (1, 4):
            deployment = f"minilm-mem{allocations}"
            deploy_and_wait(
                c,
                deployment,
                model_id=model_id,
                allocations=allocations,
                threads_per_allocation=1,
                max_batch_size=1,
            )
            nodes = hosting_nodes(c, deployment)
            url = f"{platform.url}/v2/models/{deployment}/infer"
            wait_until_serving(url, minilm.body, key)
            drive = run_wrk(f"memory {deployment}", url, minilm.body, headers, 8, MEMORY_DRIVE_SECONDS, 0)
            rss = {n: platform.node_rss(n) for n in nodes}
            out[f"alloc{allocations}"] = {
                "nodes": nodes,
                "rss": sum(rss.values()),
                "growth": sum(rss[n] - baseline[n] for n in nodes),
                "drive_ok": drive.ok,
            }
        one, four = out["alloc1"], out["alloc4"]
        problems = []
        if len(four["nodes"]) != 1:
            problems.append(f"the 4 allocations were spread over nodes {four['nodes']}")
        if set(one["nodes"]) & set(four["nodes"]):
            problems.append("both deployments landed on one node")
        if not (one["drive_ok"] and four["drive_ok"]):
            problems.append("a drive run had errors")
        out["problems"] = problems
        for allocations in (1, 4):
            remove(c, f"minilm-mem{allocations}")
    return out


def load_phase(
    peer_url: str,
    platform: Platform,
    models: list[BenchModel],
    model_ids: dict[str, str],
    serve: ServeConfig,
    t: Timings,
) -> dict[str, Any]:
    """Figure by figure: the raw floor, then each concurrency through the peer, then modelfleet
    with batching off and on (in each shape of that figure), one right after the other (rather
    than all peer runs, then all modelfleet runs), so a change in the machine's load moves both
    sides of a ratio. The nodes' counters are read around each modelfleet run, for the batch
    sizes formed; the raw run of those batches is timed after the load runs.

    Returns {"raw": {model: {...}}, "peer": {model: {"c1"|"c16": LoadResult}},
    "off"|"on": {model: {"<shape>:c<n>": LoadResult}}, "formed": {"off"|"on": {model: {...}}}}.
    """
    out: dict[str, Any] = {"raw": {}, "peer": {}, "off": {}, "on": {}, "formed": {"off": {}, "on": {}}}
    auth = {"Authorization": f"Bearer {platform.admin_key}"}
    with platform.client() as c:
        for m in models:
            shapes = serve.shapes(m.name)
            urls: dict[tuple[str, str], str] = {}
            for shape in shapes:
                for mode in ("off", "on"):
                    deployment = _deployment(m.name, shape, mode)
                    spec = serve.spec(m.name, mode, shape)
                    deploy_and_wait(c, deployment, model_id=model_ids[m.name], **spec)
                    urls[shape.label, mode] = f"{platform.url}/v2/models/{deployment}/infer"
                    wait_until_serving(urls[shape.label, mode], m.body, platform.admin_key)
            out["raw"][m.name] = raw_floor(m, shapes)
            _print_raw(m.name, out["raw"][m.name])
            for side in ("peer", "off", "on"):
                out[side][m.name] = {}
            for mode in ("off", "on"):
                out["formed"][mode][m.name] = {}
            peer = f"{peer_url}/v2/models/{m.name}/infer"
            for conc in CONCURRENCIES:
                result = run_wrk(f"peer {m.name} c={conc}", peer, m.body, {}, conc, t.duration_s, t.warmup_s)
                print(_summary(result), flush=True)
                out["peer"][m.name][f"c{conc}"] = result
                for shape in [s for n, s in serve.runs(m.name) if n == conc]:
                    for mode in ("off", "on"):
                        key = f"{shape.label}:c{conc}"
                        label = f"modelfleet {mode} [{shape.label}] {m.name} c={conc}"
                        result, formed = _measured_run(
                            c,
                            label,
                            urls[shape.label, mode],
                            _deployment(m.name, shape, mode),
                            m,
                            auth,
                            conc,
                            t,
                        )
                        print(_summary(result) + f"  batches of {formed['average_batch']:.1f}", flush=True)
                        out[mode][m.name][key] = result
                        out["formed"][mode][m.name][key] = formed
            for shape in shapes:
                for mode in ("off", "on"):
                    remove(c, _deployment(m.name, shape, mode))
            out["raw"][m.name].update(raw_batches(m, out["formed"]["on"][m.name], shapes))
            _print_raw(m.name, out["raw"][m.name])
    return out


def _deployment(model: str, shape: Shape, mode: str) -> str:
    return f"{model}-{shape.label}-batching-{mode}"


def _print_raw(model: str, raw: dict[str, float]) -> None:
    print(f"  raw {model}: " + ", ".join(f"{k} {v:.3f}" for k, v in raw.items()), flush=True)


def _measured_run(
    c: Client,
    label: str,
    url: str,
    deployment: str,
    m: BenchModel,
    auth: dict[str, str],
    conc: int,
    t: Timings,
) -> tuple[LoadResult, dict[str, Any]]:
    """One wrk run (after its warm-up) with the nodes' batch counters read around the measured
    part only."""
    if t.warmup_s > 0:
        run_wrk(f"{label} warm-up", url, m.body, auth, conc, t.warmup_s, 0)
    before = node_stats(c)
    result = run_wrk(label, url, m.body, auth, conc, t.duration_s, 0)
    return result, batch_counters(before, node_stats(c), deployment)
