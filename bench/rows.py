"""Turning one run's measurements into the table's rows (figure, modelfleet, peer/raw, ratio,
target, ok?), with the issue's targets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.coldstart import Timing
from bench.load import LoadResult
from bench.phases import BATCH_OF_16, ServeConfig
from bench.report import Row, compare, mib, ms, rps, seconds

MODELS = ("digits", "minilm")
COLD_START_TARGET_S = 1.0


def at_least(want: float) -> Callable[[float], bool]:
    return lambda r: r >= want


def _failed(*runs: LoadResult) -> str:
    bad = [r for r in runs if not r.ok]
    return "; ".join(
        f"{r.label}: non-2xx {r.non_2xx}, socket errors {r.socket_errors} {r.error[:200]}" for r in bad
    )


def latency_rows(raw: dict[str, dict[str, float]], peer: dict[str, Any], mf: dict[str, Any]) -> list[Row]:
    rows = []
    for m in MODELS:
        p1: LoadResult = peer["runs"][m]["c1"]
        off1: LoadResult = mf["throughput"]["off"][m]["c1"]
        on1: LoadResult = mf["throughput"]["on"][m]["c1"]
        floor = raw[m]["allocation_p50_ms"]
        default = raw[m]["p50_ms"]
        rows.append(
            compare(
                f"{m} c=1 p50 vs raw session.run",
                off1.p50_ms,
                floor,
                ms,
                note=f"raw on one allocation's threads; with onnxruntime's default threads (the peer's) "
                f"{default:.3f} ms, and the peer's p50 is {p1.p50_ms / default:.1f}x that",
                failed=_failed(off1),
            )
        )
        for mode, run in (("off", off1), ("on", on1)):
            rows.append(
                compare(
                    f"{m} c=1 p50, batching {mode}",
                    run.p50_ms,
                    p1.p50_ms,
                    ms,
                    "<= 1.0x",
                    lambda r: r <= 1.0,
                    failed=_failed(run, p1),
                )
            )
        rows.append(
            compare(f"{m} c=1 p99, batching off", off1.p99_ms, p1.p99_ms, ms, failed=_failed(off1, p1))
        )
    return rows


def throughput_rows(
    raw: dict[str, dict[str, float]], peer: dict[str, Any], mf: dict[str, Any], serve: ServeConfig
) -> list[Row]:
    rows = []
    for m in MODELS:
        p16: LoadResult = peer["runs"][m]["c16"]
        for mode, want in (("off", 1.0), ("on", 1.5)):
            run: LoadResult = mf["throughput"][mode][m]["c16"]
            rows.append(
                compare(
                    f"{m} c=16 req/s, batching {mode}",
                    run.rps,
                    p16.rps,
                    rps,
                    f">= {want}x",
                    at_least(want),
                    failed=_failed(run, p16),
                )
            )
    off16: LoadResult = mf["throughput"]["off"]["minilm"]["c16"]
    on16: LoadResult = mf["throughput"]["on"]["minilm"]["c16"]
    rows.append(
        compare(
            "minilm batching gain, c=16 req/s (on vs off)",
            on16.rps,
            off16.rps,
            rps,
            ">= 2.0x",
            lambda r: r >= 2.0,
            failed=_failed(on16, off16),
        )
    )
    delay = float(serve.batching_on["minilm"]["max_batch_delay_ms"])
    batch_run = raw["minilm"]["batch16_p50_ms"]
    bound = delay + batch_run
    rows.append(
        compare(
            "minilm c=16 p95, batching on (vs delay + batch-16 run)",
            on16.p95_ms,
            bound,
            ms,
            "<= 1.0x",
            lambda r: r <= 1.0,
            note=f"bound = max_batch_delay {delay:g} ms + raw run of {BATCH_OF_16} rows on "
            f"{serve.threads_per_allocation} thread(s) {batch_run:.1f} ms",
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
        latency_rows(raw, peer, mf)
        + throughput_rows(raw, peer, mf, serve)
        + memory_rows(mf)
        + cold_start_rows(peer, mf)
    )
