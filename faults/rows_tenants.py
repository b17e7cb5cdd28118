"""Row 10: the cross-tenant matrix — every route x method of every face, called with another
project's key and this project's ids: only 401/403/404 (or the justified exceptions listed in
faults/cross_tenant.py), never data, never 5xx."""

from __future__ import annotations

from faults.cross_tenant import a_still_sees_its_objects, build_world, destroy_world, run_matrix
from faults.result import Context, RowResult
from modelfleet.examples.tiny_text import build_tiny_text_classifier


def cross_tenant(ctx: Context) -> RowResult:
    platform_key = ctx.extra["platform_key"]
    text = build_tiny_text_classifier(ctx.workdir / "tiny-text")
    world = build_world(
        ctx.platform.url, ctx.platform.admin_key, platform_key, ctx.workdir / "digits.onnx", text
    )
    try:
        matrix = run_matrix(world)
        problems = a_still_sees_its_objects(world)
    finally:
        destroy_world(world)
    return RowResult(
        sent=matrix.sent,
        acknowledged=matrix.sent,
        ok=matrix.ok,
        leaks=len(matrix.leaks),
        lost=len(problems),  # A lost access to its own objects
        errors_5xx=matrix.server_errors,
        notes=matrix.summary() + (f"; A-side problems: {problems}" if problems else ""),
    )
