"""The benchmark's table: one row per figure, each a ratio of two numbers from the same run."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

HEADERS = ("figure", "modelfleet", "peer/raw", "ratio", "target", "ok?")


@dataclass(frozen=True)
class Row:
    figure: str
    modelfleet: str
    reference: str
    ratio: float | None
    target: str  # e.g. "<= 1.0x", "info"
    ok: bool | None  # None: no target (info), or no figure (pending)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def compare(
    figure: str,
    value: float | None,
    reference: float | None,
    fmt: Callable[[float], str],
    target: str = "info",
    check: Callable[[float], bool] | None = None,
    note: str = "",
    failed: str = "",
    check_value: Callable[[float], bool] | None = None,
) -> Row:
    """A row `value / reference`, judged by `check` on the ratio or `check_value` on the value.

    `failed` (a reason) marks a run with errors: no figure is shown for it, and it misses its target.
    """
    r = ratio(value, reference)
    if failed:
        return Row(figure, "FAILED", fmt_or_dash(reference, fmt), None, target, False, failed)
    ok: bool | None = None
    if check is not None and r is not None:
        ok = check(r)
    if check_value is not None and value is not None:
        ok = check_value(value)
    return Row(figure, fmt_or_dash(value, fmt), fmt_or_dash(reference, fmt), r, target, ok, note)


def fmt_or_dash(v: float | None, fmt: Callable[[float], str]) -> str:
    return "-" if v is None else fmt(v)


def ms(v: float) -> str:
    if v < 1:
        return f"{v:.3f} ms"
    return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"


def rps(v: float) -> str:
    return f"{v:.0f} req/s"


def mib(v: float) -> str:
    return f"{v / 2**20:.0f} MiB"


def seconds(v: float) -> str:
    return f"{v:.2f} s"


def render(rows: list[Row]) -> str:
    cells = [list(HEADERS)] + [
        [
            r.figure,
            r.modelfleet,
            r.reference,
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            r.target,
            {True: "yes", False: "NO", None: "-"}[r.ok],
        ]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADERS))]
    lines = []
    for i, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [f"  {r.figure}: {r.note}" for r in rows if r.note]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))
