"""`python -m bench` (what `make bench` runs): one benchmark run, a table, bench-results.json.

The peer server and the real local platform run side by side: first the platform's memory and
cold-start figures, then, model by model, the raw floor (in this process) and each load figure
through the peer, modelfleet with batching off and with batching on, one right after the other.
Exit status 1 if any load run had errors (such a run is reported as FAILED, never as fast);
`--strict` also fails on a missed target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform as host
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import onnxruntime

from bench import batch, coldstart, phases, pipelines
from bench.load import LoadResult, WrkMissing, wrk_path
from bench.models import BenchModel, digits_for_ml, digits_model, minilm_model
from bench.peer import running_peer
from bench.platform import start_platform
from bench.report import render
from bench.rows import build_rows

ROOT = Path(__file__).resolve().parent.parent


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def wrk_version() -> str:
    done = subprocess.run([wrk_path(), "--version"], capture_output=True, text=True)
    return (done.stdout or done.stderr).splitlines()[0]


def to_json(value: Any) -> Any:
    if isinstance(value, LoadResult):
        return value.as_dict()
    if isinstance(value, coldstart.Timing):
        return {"status": value.status, "seconds": value.seconds, "note": value.note}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def servers_phases(
    models: list[BenchModel], cache: Path, workdir: Path, serve: phases.ServeConfig, t: phases.Timings
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The peer and the platform side by side: memory and cold start on the platform, then the
    figure-by-figure load runs. Returns (raw, peer, modelfleet) results."""
    by_name = {m.name: m for m in models}
    print("peer: starting FastAPI + uvicorn + onnxruntime ...", flush=True)
    t0 = time.perf_counter()
    with running_peer({m.name: m.path for m in models}, workdir / "peer.log") as (peer_url, _):
        peer: dict[str, Any] = {"start_to_ready_s": time.perf_counter() - t0}
        print("modelfleet: starting the local platform ...", flush=True)
        t0 = time.perf_counter()
        platform = start_platform(workdir)
        mf: dict[str, Any] = {"platform_start_s": time.perf_counter() - t0}
        try:
            with platform.client() as c:
                model_ids = {
                    m.name: c.register_model(m.path, name=f"bench-{m.name}", format="onnx")["model_id"]
                    for m in models
                }
                print("modelfleet: memory (MiniLM, 1 and 4 allocations) ...", flush=True)
                mf["memory"] = phases.memory_phase(platform, by_name["minilm"], model_ids["minilm"])
                print("modelfleet: cold start (digits) ...", flush=True)
                digits = by_name["digits"]
                ctx = coldstart.ColdStartContext(
                    platform.url, platform.admin_key, c, model_ids["digits"], digits_for_ml(digits, cache)
                )
                mf["cold_start"] = {
                    "native_deploy_to_started": coldstart.native_deploy_to_started(ctx),
                    "ml_start_to_started": coldstart.ml_start_to_started(ctx),
                    "scale_from_zero_to_first_prediction": coldstart.scale_from_zero_to_first_prediction(ctx),
                    "pipeline_elastic_wake": pipelines.elastic_wake_to_first_output(
                        platform.url, platform.admin_key, workdir / "pipelines"
                    ),
                }
            print("load: raw floor, then peer, modelfleet batching off, on; figure by figure ...", flush=True)
            runs = phases.load_phase(peer_url, platform, models, model_ids, serve, t)
        except Exception:
            print(f"the platform's log ends with:\n{platform.log()[-3000:]}", file=sys.stderr)
            raise
        finally:
            platform.stop()
    peer["runs"] = runs["peer"]
    mf["throughput"] = {"off": runs["off"], "on": runs["on"]}
    mf["formed"] = runs["formed"]
    return runs["raw"], peer, mf


def main(argv: list[str] | None = None) -> int:
    defaults = phases.ServeConfig()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=int, default=6, help="whole seconds measured per wrk run")
    parser.add_argument("--warmup", type=int, default=2, help="whole seconds of discarded warm-up per run")
    parser.add_argument(
        "--allocations", type=int, default=defaults.throughput.allocations, help="of the throughput shape"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=defaults.throughput.threads_per_allocation,
        help="per allocation, of the throughput shape",
    )
    parser.add_argument(
        "--minilm-delay-ms",
        type=float,
        default=defaults.batching_on["minilm"]["max_batch_delay_ms"],
        help="max_batch_delay_ms of MiniLM with batching on",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench-results.json")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    try:
        wrk = wrk_version()
    except WrkMissing as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    batching_on = defaults.batching_on
    batching_on["minilm"]["max_batch_delay_ms"] = args.minilm_delay_ms
    serve = phases.ServeConfig(phases.Shape(args.allocations, args.threads), batching_on=batching_on)
    started = time.time()
    load_start = loadavg()
    print(f"bench: {os.cpu_count()} CPUs, load average at start {load_start}, {wrk}", flush=True)
    work = ROOT / ".modelfleet"
    cache, run_dir = work / "bench-cache", work / "bench-run"
    t = phases.Timings(args.duration, args.warmup)

    models = [digits_model(cache), minilm_model(cache)]
    print(
        f"models: digits {models[0].size_bytes} B, MiniLM {models[1].size_bytes / 2**20:.0f} MiB "
        f"({models[1].exporter}); modelfleet shapes (allocations x threads): c=16 rows "
        f"{serve.throughput.label}, c=1 rows and MiniLM's batching gain "
        + ", ".join(f"{m.name} {serve.latency_shape(m.name).label}" for m in models),
        flush=True,
    )
    raw, peer, mf = servers_phases(models, cache, run_dir, serve, t)
    print("batch: a 100,000-row CSV job vs a plain pandas + onnxruntime loop ...", flush=True)
    mf["batch"] = batch.batch_phase(run_dir / "batch", models[0].path)

    rows = build_rows(raw, peer, mf, serve) + batch.batch_rows(mf["batch"])
    load_end = loadavg()
    results = {
        "started_at": started,
        "elapsed_s": time.time() - started,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_start": load_start,
            "loadavg_end": load_end,
            "python": host.python_version(),
            "onnxruntime": onnxruntime.__version__,
            "wrk": wrk,
        },
        "config": {
            "duration_s": t.duration_s,
            "warmup_s": t.warmup_s,
            "serve": serve.as_dict(),
            "minilm_exporter": models[1].exporter,
        },
        "raw": raw,
        "peer": peer,
        "modelfleet": mf,
        "rows": [r.as_dict() for r in rows],
    }
    args.output.write_text(json.dumps(to_json(results), indent=2))
    print()
    print(render(rows))
    print(
        f"\nload average at start {load_start}, at end {load_end}; "
        f"{results['elapsed_s']:.0f} s; results in {args.output}"
    )
    failed_runs = [r.figure for r in rows if r.modelfleet == "FAILED"]
    missed = [r.figure for r in rows if r.ok is False]
    if failed_runs:
        print(f"bench: runs with errors: {failed_runs}", file=sys.stderr)
        return 1
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
