"""The measuring phases of one benchmark run: memory, and the figure-by-figure load runs (raw
floor, peer, modelfleet with batching off and on)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from bench.load import LoadResult, run_wrk
from bench.models import BenchModel
from bench.platform import Platform, deploy_and_wait, hosting_nodes, remove, wait_for
from bench.raw import batched, run_p50_ms

CONCURRENCIES = (1, 16)
BATCH_OF_16 = 16  # the largest batch 16 concurrent requests can form
MEMORY_DRIVE_SECONDS = 2


def _default_batching_on() -> dict[str, dict[str, Any]]:
    return {
        "digits": {"max_batch_size": 32, "max_batch_delay_ms": 0.0},
        "minilm": {"max_batch_size": 32, "max_batch_delay_ms": 0.0},
    }


@dataclass(frozen=True)
class ServeConfig:
    """How modelfleet serves each model in the load runs.

    2 allocations x 1 thread: one allocation per core. Measured against 1 x 2 on this machine,
    MiniLM's c=16 throughput was 1.5x higher with 2 x 1 (a 2-thread run loses more to the other
    processes than it gains from the second thread) and c=1 latency was no worse.

    Batching on: `max_batch_size` 32 and no delay for both models. With no delay a free
    allocation takes everything queued at that moment, which at 16 requests in flight is most of
    them, so batches form by themselves under load, and an idle deployment adds no latency. A
    delay only helps when the queue is short, i.e. at low concurrency, where it costs its full
    length: on MiniLM, 2 ms and 5 ms added 3 and 7 ms to the c=1 p50 and gave no more c=16
    throughput than 0 ms (three interleaved rounds: 0 ms 173, 2 ms 163, 5 ms 161, off 133 req/s).
    """

    allocations: int = 2
    threads_per_allocation: int = 1
    batching_off: dict[str, Any] = field(
        default_factory=lambda: {"max_batch_size": 1, "max_batch_delay_ms": 0.0}
    )
    batching_on: dict[str, dict[str, Any]] = field(default_factory=_default_batching_on)

    def spec(self, model: str, mode: str) -> dict[str, Any]:
        batching = self.batching_off if mode == "off" else self.batching_on[model]
        return {
            "allocations": self.allocations,
            "threads_per_allocation": self.threads_per_allocation,
            **batching,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Timings:
    """Whole seconds (wrk's unit) per measured run and per discarded warm-up."""

    duration_s: int
    warmup_s: int


def raw_floor(m: BenchModel, threads_per_allocation: int) -> dict[str, float]:
    """In-process `session.run` p50 of one row with onnxruntime's default threads (what the peer
    uses) and with one allocation's threads; for MiniLM also a batch of 16 on one allocation's
    threads: the service time of the largest batch 16 concurrent requests can form."""
    out = {
        "p50_ms": run_p50_ms(m.path, m.inputs),
        "allocation_p50_ms": run_p50_ms(m.path, m.inputs, threads=threads_per_allocation),
    }
    if m.name == "minilm":
        out["batch16_p50_ms"] = run_p50_ms(
            m.path, batched(m.inputs, BATCH_OF_16), threads=threads_per_allocation, seconds=2.0, warmup=3
        )
    return out


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
    key = platform.key
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
    """Figure by figure: the raw floor, then each concurrency through the peer, modelfleet with
    batching off, and with batching on, one right after the other (rather than all peer runs,
    then all modelfleet runs), so a change in the machine's load moves both sides of a ratio.

    Returns {"raw": {model: {...}}, "peer"|"off"|"on": {model: {"c1"|"c16": LoadResult}}}.
    """
    out: dict[str, Any] = {"raw": {}, "peer": {}, "off": {}, "on": {}}
    auth = {"Authorization": f"Bearer {platform.key}"}
    with platform.client() as c:
        for m in models:
            urls = {"peer": f"{peer_url}/v2/models/{m.name}/infer"}
            for mode in ("off", "on"):
                deployment = f"{m.name}-batching-{mode}"
                deploy_and_wait(c, deployment, model_id=model_ids[m.name], **serve.spec(m.name, mode))
                urls[mode] = f"{platform.url}/v2/models/{deployment}/infer"
                wait_until_serving(urls[mode], m.body, platform.key)
            out["raw"][m.name] = raw_floor(m, serve.threads_per_allocation)
            print(f"  raw {m.name}: " + ", ".join(f"{k} {v:.3f}" for k, v in out["raw"][m.name].items()))
            for side in urls:
                out[side][m.name] = {}
            for conc in CONCURRENCIES:
                for side, url in urls.items():
                    label = f"{'peer' if side == 'peer' else 'modelfleet ' + side} {m.name} c={conc}"
                    headers = {} if side == "peer" else auth
                    result = run_wrk(label, url, m.body, headers, conc, t.duration_s, t.warmup_s)
                    print(_summary(result), flush=True)
                    out[side][m.name][f"c{conc}"] = result
            for mode in ("off", "on"):
                remove(c, f"{m.name}-batching-{mode}")
    return out
