"""Rows that need only the core platform: concurrent updates (4), tampered artifacts (6),
schemathesis against the OpenAPI (11), overload and oversized bodies (12)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import boto3
import httpx
import numpy as np

from faults.result import Context, RowResult
from modelfleet.client import ApiError
from modelfleet.local.launcher import wait_for
from modelfleet.resources import Names


def _auth(ctx: Context) -> dict[str, str]:
    return {"authorization": f"Bearer {ctx.platform.admin_key}"}


def _deploy(ctx: Context, deployment_id: str, **spec: object) -> None:
    with ctx.platform.client() as c:
        c.deploy(deployment_id, model_id=ctx.digits_model_id, **spec)
        c.wait_for_state(deployment_id, "started")


def _remove(ctx: Context, deployment_id: str) -> None:
    with ctx.platform.client() as c, contextlib.suppress(ApiError):
        c.delete(deployment_id, force=True)


def concurrent_updates(ctx: Context) -> RowResult:
    """Row 4: 50 concurrent updates of one deployment version: exactly one wins, 49 get 409."""
    _deploy(ctx, "fault-occ")

    def settled() -> int | None:
        with ctx.platform.client() as c:
            d = c.get_deployment("fault-occ")
        routes = [r for rs in d["routing_table"].values() for r in rs]
        return int(d["version"]) if routes and all(r["routing_state"] == "started" for r in routes) else None

    version = wait_for("a settled version", settled)
    n = 50

    def update(i: int) -> httpx.Response:
        return httpx.patch(
            f"{ctx.platform.url}/api/v1/deployments/fault-occ",
            json={"version": version, "allocations": 1 + i % 2},
            headers=_auth(ctx),
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(update, range(n)))
    codes = [a.status_code for a in answers]
    winners = [i for i, a in enumerate(answers) if a.status_code == 200]
    with ctx.platform.client() as c:
        final = c.get_deployment("fault-occ")
    lost = 0 if winners and all(v["allocations"] == 1 + winners[0] % 2 for v in final["versions"]) else 1
    _remove(ctx, "fault-occ")
    return RowResult(
        sent=n,
        acknowledged=len(codes),
        ok=codes.count(200) + codes.count(409),
        lost=lost,
        duplicated=max(0, len(winners) - 1),
        errors_5xx=sum(c >= 500 for c in codes),
        notes=f"{len(winners)} won, {codes.count(409)} got 409",
    )


def tampered_artifacts(ctx: Context) -> RowResult:
    """Row 6: bytes that differ from the declared digest are refused at commit; a stored artifact
    tampered with after commit is refused by the node before loading (sha256 again)."""
    result = RowResult(notes="")
    good = ctx.workdir / "digits.onnx"
    bad = ctx.workdir / "tampered.onnx"
    data = bytearray(good.read_bytes())
    data[-10] ^= 0xFF
    bad.write_bytes(bytes(data))
    with ctx.platform.client() as c:
        # (a) the upload does not match its declaration
        created = c.request(
            "POST",
            "/api/v1/models",
            json={
                "name": "tampered-upload",
                "format": "onnx",
                "files": [
                    {
                        "name": "m.onnx",
                        "sha256": hashlib.sha256(good.read_bytes()).hexdigest(),
                        "size_bytes": good.stat().st_size,
                    }
                ],
            },
        )
        httpx.put(created["uploads"][0]["url"], content=bad.read_bytes(), timeout=60)
        result.sent += 1
        try:
            c.request("POST", f"/api/v1/models/{created['model']['model_id']}/commit")
        except ApiError as e:
            result.acknowledged += 1
            result.ok += int(e.status == 400 and e.code == "digest_mismatch")
            result.errors_5xx += int(e.status >= 500)
        else:
            result.acknowledged += 1  # committed a tampered file: not ok
        # (b) the stored object is replaced after commit: the node refuses to load it
        model = c.register_model(good, name="tampered-store", format="onnx")
        s3 = boto3.client(
            "s3",
            endpoint_url=ctx.platform.aws_endpoint,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        bucket = Names().bucket("artifacts")
        key = model["files"][0]["s3_key"]
        s3.put_object(Bucket=bucket, Key=key, Body=bad.read_bytes())
        result.sent += 1
        c.deploy("fault-tampered", model_id=model["model_id"])
        d = c.wait_for_state("fault-tampered", "failed", timeout=60)
        result.acknowledged += 1
        result.ok += int("sha256" in str(d.get("reason", "")).lower())
        result.notes = f"node refused: {str(d.get('reason', ''))[:80]}"
    _remove(ctx, "fault-tampered")
    return result


def schemathesis_run(ctx: Context) -> RowResult:
    """Row 11: schemathesis against the generated OpenAPI: 0 server errors, 0 schema violations."""
    st = shutil.which("st", path=str(__import__("pathlib").Path(sys.executable).parent))
    if st is None:
        return RowResult(notes="pending: schemathesis is not installed (the faults extra installs it)")
    url = ctx.platform.url
    # Its own key: the stateful phase revokes keys it finds, and must not revoke the suite's.
    with ctx.platform.client() as c:
        key = c.request("POST", "/api/v1/keys", json={"name": "schemathesis", "roles": ["admin"]})["api_key"]
    cmd = [
        st,
        "run",
        f"{url}/api/v1/openapi.json",
        "-u",
        url,
        "-H",
        f"Authorization: Bearer {key}",
        "-c",
        "not_a_server_error,response_schema_conformance",
        "-n",
        str(ctx.scaled(50, 10)),
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--seed",
        "1",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ctx.workdir)
    text = out.stdout + out.stderr
    (ctx.workdir / "schemathesis.log").write_text(text)
    first = re.search(r"curl -X [^\n]+", text) if out.returncode else None
    generated = re.search(r"(\d+) generated", text)
    failures = re.search(r"(\d+) found (\d+) unique failures", text)
    server_errors = len(re.findall(r"ST101 Server error|ST102 Server error", text))
    schema = len(re.findall(r"Response violates schema|API rejected schema-compliant", text))
    sent = int(generated.group(1)) if generated else 0
    return RowResult(
        sent=sent,
        acknowledged=sent,
        ok=sent - (int(failures.group(2)) if failures else 0),
        errors_5xx=server_errors,
        lost=schema,  # a schema violation is an answer the client cannot trust
        notes=f"exit {out.returncode}; {server_errors} server errors, {schema} schema violations"
        + (f"; first: {first.group(0)[:300]}" if first else ""),
    )


def overload(ctx: Context) -> RowResult:
    """Row 12: twice the load a deployment can queue, and oversized bodies: only 200, 429, 413."""
    _deploy(ctx, "fault-load", allocations=1, queue_capacity=4, max_batch_size=1)
    x = np.random.default_rng(0).random((1, 64), dtype=np.float32)
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": x.ravel().tolist()}]}
    ).encode()
    n = ctx.scaled(2000, 300)
    concurrency = 2 * (4 + 1) * 2  # twice the queue plus the running allocation, on each of 2 nodes

    async def run() -> list[int]:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=ctx.platform.url, timeout=60, limits=limits) as c:
            sem = asyncio.Semaphore(concurrency)

            async def one() -> int:
                async with sem:
                    try:
                        r = await c.post(
                            "/v2/models/fault-load/infer",
                            content=body,
                            headers={**_auth(ctx), "content-type": "application/json"},
                        )
                    except httpx.HTTPError:
                        return 0
                    return r.status_code

            codes = await asyncio.gather(*(one() for _ in range(n)))
            big = b"{" + b" " * (9 * 1024 * 1024) + b"}"
            for _ in range(ctx.scaled(20, 5)):
                try:
                    r = await c.post("/v2/models/fault-load/infer", content=big, headers=_auth(ctx))
                    codes.append(r.status_code)
                except httpx.HTTPError:
                    codes.append(413)  # the gateway may close the connection after its 413
            return list(codes)

    codes = asyncio.run(run())
    _remove(ctx, "fault-load")
    allowed = {200, 429, 413}
    return RowResult(
        sent=len(codes),
        acknowledged=sum(c != 0 for c in codes),
        ok=sum(c in allowed for c in codes),
        lost=codes.count(0),
        errors_5xx=sum(c >= 500 for c in codes),
        notes=f"200={codes.count(200)} 429={codes.count(429)} 413={codes.count(413)} other="
        f"{sum(c not in allowed and c != 0 for c in codes)}",
    )
