"""`make faults` (and `python -m faults [--short]`): run every row of the fault suite against a
fresh local platform, print sent / acknowledged / ok / lost / duplicated / 5xx per row, and write
`faults-results.json`. Rows whose feature has not landed are listed as pending, never skipped
silently. Exits 1 if any row lost, duplicated, leaked or answered 5xx."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from faults import rows_artifacts, rows_batch, rows_core, rows_rollout, rows_tenants
from faults.result import Context, RowResult
from modelfleet.examples.digits import build_example
from modelfleet.local.launcher import LaunchOptions, launch

ADMIN_KEY = "mfk_faults:faults-secret-0123456789abcdef"
PLATFORM_KEY = "mfk_faultsplatform:faults-platform-secret-0123456789abcdef"  # admin of _system
COLUMNS = ("sent", "ack", "ok", "lost", "dup", "5xx", "leak")
WIDTHS = (6, 6, 6, 5, 4, 4, 4)


@dataclass(frozen=True)
class Row:
    number: int
    title: str
    run: Callable[[Context], RowResult] | None = None
    pending: str = ""  # why it cannot run yet


def rows() -> list[Row]:
    found = [
        Row(1, "kill -9 a worker during 1,000 queued async requests", rows_batch.kill_worker),
        Row(2, "every message delivered 3 times, some concurrently", rows_batch.triple_delivery),
        Row(3, "a poison message among 999 good ones", rows_batch.poison_message),
        Row(4, "50 concurrent updates to one deployment", rows_core.concurrent_updates),
        Row(5, "a failing new version during a rollout", rows_rollout.failing_version),
        Row(6, "a tampered artifact", rows_core.tampered_artifacts),
        Row(7, "the malicious model corpus", rows_artifacts.malicious_models),
        Row(8, "archive traversal and bombs", rows_artifacts.archives),
        Row(9, "SSRF payloads", rows_artifacts.ssrf),
        Row(10, "the cross-tenant matrix", rows_tenants.cross_tenant),
        Row(11, "schemathesis against the generated OpenAPI", rows_core.schemathesis_run),
        Row(12, "2x overload and oversized bodies", rows_core.overload),
    ]
    return found


def print_table(results: list[tuple[Row, RowResult | None, str]]) -> None:
    cells = " ".join(f"{c:>{w}}" for c, w in zip(COLUMNS, WIDTHS, strict=True))
    head = f"{'#':>2}  {'row':<48} {cells}  notes"
    print(head)
    print("-" * len(head))
    for row, res, note in results:
        if res is None:
            blank = " ".join(" " * w for w in WIDTHS)
            print(f"{row.number:>2}  {row.title[:48]:<48} {blank}  {note}")
            continue
        print(
            f"{row.number:>2}  {row.title[:48]:<48} {res.sent:>6} {res.acknowledged:>6} {res.ok:>6} "
            f"{res.lost:>5} {res.duplicated:>4} {res.errors_5xx:>4} {res.leaks:>4}  {res.notes}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m faults")
    parser.add_argument("--short", action="store_true", help="fewer requests (the CI form)")
    parser.add_argument("--only", type=int, nargs="*", help="row numbers to run")
    parser.add_argument("--output", type=Path, default=Path("faults-results.json"))
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="mf-faults-"))
    options = LaunchOptions(
        nodes=2,
        node_processors=4,
        heartbeat_interval=0.5,
        node_lost_after=3,
        env={"MODELFLEET_PLATFORM_API_KEY": PLATFORM_KEY, **rows_batch.BATCH_FAULT_ENV},
    )
    platform = launch(workdir / "home", ADMIN_KEY, options)
    results: list[tuple[Row, RowResult | None, str]] = []
    try:
        build_example(workdir)
        shutil.copy(workdir / "digits.onnx", workdir / "digits-copy.onnx")
        with platform.client() as c:
            model = c.register_model(workdir / "digits.onnx", name="faults-digits", format="onnx")
        ctx = Context(
            platform=platform,
            workdir=workdir,
            short=args.short,
            digits_model_id=model["model_id"],
            extra={"platform_key": PLATFORM_KEY},
        )
        # schemathesis last: its stateful phase deletes what it can reach.
        for row in sorted(rows(), key=lambda r: r.number == 11):
            if args.only and row.number not in args.only:
                continue
            if row.run is None:
                results.append((row, None, f"pending: {row.pending}"))
                continue
            started = time.monotonic()
            try:
                res = row.run(ctx)
            except Exception as e:  # a row that crashes is a failed row, shown with its error
                traceback.print_exc()
                res = RowResult(lost=1, notes=f"row failed: {type(e).__name__}: {e}"[:200])
            res.notes = f"{res.notes} ({time.monotonic() - started:.0f}s)"
            results.append((row, res, ""))
    finally:
        platform.stop()
    results.sort(key=lambda r: r[0].number)
    print_table(results)
    args.output.write_text(
        json.dumps(
            [
                {"row": r.number, "title": r.title, **(res.as_dict() if res else {"pending": note})}
                for r, res, note in results
            ],
            indent=2,
        )
    )
    bad = [r.number for r, res, _ in results if res is not None and not res.clean]
    if bad:
        print(f"rows with lost, duplicated, leaked or 5xx answers: {bad}", file=sys.stderr)
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
