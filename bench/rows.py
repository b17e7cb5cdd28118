"""Turning one run's measurements into the table's rows (figure, modelfleet, peer/raw, ratio,
target, ok?), with the issue's targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.coldstart import Timing
from bench.load import LoadResult
from bench.phases import ServeConfig
from bench.report import Row, compare, mib, ms, rps, seconds
from modelfleet.worker.batcher import SHARE_WAIT_FRACTION

MODELS = ("digits", "minilm")
COLD_START_TARGET_S = 1.0


def at_least(want: float) -> Callable[[float], bool]:
    return lambda r: r >= want


def _failed(*runs: LoadResult) -> str:
    bad = [r for r in runs if not r.ok]
    return "; ".join(
        f"{r.label}: non-2xx {r.non_2xx}, socket errors {r.socket_errors} {r.error[:200]}" for r in bad
    )


def latency_rows(
    raw: dict[str, dict[str, float]], peer: dict[str, Any], mf: dict[str, Any], serve: ServeConfig
) -> list[Row]:
    rows = []
    for m in MODELS:
        shape = serve.latency_shape(m)
        key, tag = f"{shape.label}:c1", f"[{shape.label}]"
        p1: LoadResult = peer["runs"][m]["c1"]
        off1: LoadResult = mf["throughput"]["off"][m][key]
        on1: LoadResult = mf["throughput"]["on"][m][key]
        floor = raw[m][f"t{shape.threads_per_allocation}_p50_ms"]
        default = raw[m]["p50_ms"]
        rows.append(
            compare(
                f"{m} c=1 p50 {tag} vs raw session.run",
                off1.p50_ms,
                floor,
                ms,
                note=f"raw on one allocation's {shape.threads_per_allocation} thread(s); with "
                f"onnxruntime's default threads (the peer's) {default:.3f} ms, and the peer's p50 is "
                f"{p1.p50_ms / default:.1f}x that",
                failed=_failed(off1),
            )
        )
        for mode, run in (("off", off1), ("on", on1)):
            rows.append(
                compare(
                    f"{m} c=1 p50 {tag}, batching {mode}",
                    run.p50_ms,
                    p1.p50_ms,
                    ms,
                    "<= 1.0x",
                    lambda r: r <= 1.0,
                    failed=_failed(run, p1),
                )
            )
        rows.append(
            compare(f"{m} c=1 p99 {tag}, batching off", off1.p99_ms, p1.p99_ms, ms, failed=_failed(off1, p1))
        )
    return rows


def throughput_rows(
    raw: dict[str, dict[str, float]], peer: dict[str, Any], mf: dict[str, Any], serve: ServeConfig
) -> list[Row]:
    rows = []
    key, tag = f"{serve.throughput.label}:c16", f"[{serve.throughput.label}]"
    for m in MODELS:
        p16: LoadResult = peer["runs"][m]["c16"]
        for mode, want in (("off", 1.0), ("on", 1.5)):
            run: LoadResult = mf["throughput"][mode][m][key]
            formed = mf["formed"][mode][m][key]
            rows.append(
                compare(
                    f"{m} c=16 req/s {tag}, batching {mode}",
                    run.rps,
                    p16.rps,
                    rps,
                    f">= {want}x",
                    at_least(want),
                    note=f"batches of {formed['average_batch']:.1f} requests on average"
                    if mode == "on"
                    else "",
                    failed=_failed(run, p16),
                )
            )
    return rows + gain_rows(raw["minilm"], mf, serve)


def gain_rows(raw: dict[str, float], mf: dict[str, Any], serve: ServeConfig) -> list[Row]:
    """MiniLM's batching gain in each shape (the target is the latency shape's, where batches
    can pay most; the others are information), and its c=16 p95 against the bound."""
    rows = []
    main = serve.latency_shape("minilm")
    for shape in serve.shapes("minilm"):
        key = f"{shape.label}:c16"
        off16: LoadResult = mf["throughput"]["off"]["minilm"][key]
        on16: LoadResult = mf["throughput"]["on"]["minilm"][key]
        formed = mf["formed"]["on"]["minilm"][key]
        note = f"batches of {formed['average_batch']:.1f} requests on average"
        batch, single = raw.get(f"{shape.label}_batch_p50_ms"), raw.get(f"{shape.label}_rows_p50_ms")
        if batch and single:
            size = int(raw[f"{shape.label}_batch_size"])
            note += (
                f"; raw ceiling on {shape.threads_per_allocation} thread(s): {size} single rows "
                f"{single:.1f} ms vs one batch of {size} {batch:.1f} ms = {single / batch:.2f}x"
            )
        rows.append(
            compare(
                f"minilm batching gain [{shape.label}], c=16 req/s (on vs off)",
                on16.rps,
                off16.rps,
                rps,
                ">= 2.0x" if shape == main else "info",
                at_least(2.0) if shape == main else None,
                note=note,
                failed=_failed(on16, off16),
            )
        )
    key = f"{main.label}:c16"
    on16 = mf["throughput"]["on"]["minilm"][key]
    formed = mf["formed"]["on"]["minilm"][key]
    delay = float(serve.batching_on["minilm"]["max_batch_delay_ms"])
    # The batcher's own wait for a batch's share (batcher.py) counts as batching delay: a batch
    # waits until the later of the two, so the most a request waits before its batch runs is
    # the larger one.
    share_wait = SHARE_WAIT_FRACTION * float(formed["batch_run_ms"])
    wait = max(delay, share_wait)
    service = float(formed["batch_run_p95_ms"])
    note = (
        f"bound = batching wait {wait:.1f} ms (the larger of max_batch_delay {delay:g} ms and the "
        f"share wait, <= {SHARE_WAIT_FRACTION:g} x a batch's run) + one batch's run, p95 over "
        f"requests as the node timed the batches of this run, {service:.1f} ms (mean "
        f"{formed['batch_run_ms']:.1f} ms, batches of {formed['average_batch']:.1f} on average)"
    )
    if f"{main.label}_batch_p50_ms" in raw:
        note += (
            f"; raw run of {int(raw[f'{main.label}_batch_size'])} rows on {main.threads_per_allocation} "
            f"thread(s) {raw[f'{main.label}_batch_p50_ms']:.1f} ms"
        )
    rows.append(
        compare(
            f"minilm c=16 p95 [{main.label}], batching on (vs wait + one batch's run)",
            on16.p95_ms,
            wait + service if service else None,
            ms,
            "<= 1.0x",
            lambda r: r <= 1.0,
            note=note,
            failed=_failed(on16),
        )
    )
    return rows


def memory_rows(mf: dict[str, Any]) -> list[Row]:
    mem = mf["memory"]
    one, four = mem["alloc1"], mem["alloc4"]
    invalid = "; ".join(mem["problems"])
    model = mem["model_bytes"]
    return [
        compare(
            "minilm RSS growth, 4 allocations vs 1",
            float(four["growth"]),
            float(one["growth"]),
            mib,
            "<= 1.3x",
            lambda r: r <= 1.3,
            note=f"model file {model / 2**20:.0f} MiB; growth is {one['growth'] / model:.2f}x the file "
            f"with 1 allocation, {four['growth'] / model:.2f}x with 4",
            failed=invalid,
        ),
        compare(
            "minilm node RSS, 4 allocations vs 1", float(four["rss"]), float(one["rss"]), mib, failed=invalid
        ),
    ]


def cold_start_rows(peer: dict[str, Any], mf: dict[str, Any]) -> list[Row]:
    peer_start = float(peer["start_to_ready_s"])
    labels = {
        "native_deploy_to_started": "digits deploy -> started (native API)",
        "ml_start_to_started": "digits _start?wait_for=started (_ml)",
        "scale_from_zero_to_first_prediction": "digits scale-from-zero -> first prediction",
        "pipeline_elastic_wake": "pipeline (elastic) stand-by -> first output",
    }
    rows = []
    for key, figure in labels.items():
        timing: Timing = mf["cold_start"][key]
        if timing.status == "measured":
            rows.append(
                compare(
                    figure,
                    timing.seconds,
                    peer_start,
                    seconds,
                    f"<= {COLD_START_TARGET_S:g} s",
                    check_value=lambda v: v <= COLD_START_TARGET_S,
                    note=timing.note,
                )
            )
        else:
            shown = timing.note if timing.status == "pending" else "error"
            note = "" if timing.status == "pending" else timing.note
            rows.append(
                Row(figure, shown, seconds(peer_start), None, f"<= {COLD_START_TARGET_S:g} s", None, note)
            )
    return rows


def build_rows(
    raw: dict[str, dict[str, float]], peer: dict[str, Any], mf: dict[str, Any], serve: ServeConfig
) -> list[Row]:
    """All rows. The cold-start reference is the peer's own start-up (process start to ready)."""
    return (
        latency_rows(raw, peer, mf, serve)
        + throughput_rows(raw, peer, mf, serve)
        + memory_rows(mf)
        + cold_start_rows(peer, mf)
    )
