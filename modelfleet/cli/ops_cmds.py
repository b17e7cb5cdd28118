"""`invoke`, `logs`, `executions`, `nodes`, `keys create|list|revoke` and `events`."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from modelfleet.cli.output import Exit, ago, err, out, print_json, styled, table
from modelfleet.cli.state import state
from modelfleet.sdk.client import Client
from modelfleet.sdk.errors import NotFound
from modelfleet.sdk.profiles import local_home
from schemas.events import StatusEvent
from schemas.keys import Role

keys = typer.Typer(help="API keys of the project: create, list, revoke.", no_args_is_help=True)


def _inputs_body(metadata: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """An OIP body from `name=JSON` pairs, datatypes from the model's signature."""
    specs = {i["name"]: i for i in metadata.get("inputs", [])}
    inputs = []
    for pair in assignments:
        name, sep, raw = pair.partition("=")
        if not sep or name not in specs:
            known = ", ".join(specs) or "none"
            raise typer.BadParameter(
                f"'{pair}': give NAME=JSON with NAME one of the model's inputs ({known})"
            )
        value = json.loads(raw)
        array = np.asarray(value)
        inputs.append(
            {
                "name": name,
                "datatype": specs[name]["datatype"],
                "shape": list(array.shape) or [1],
                "data": array.ravel().tolist(),
            }
        )
    return {"inputs": inputs}


def invoke(
    ctx: typer.Context,
    deployment_id: str,
    input: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="NAME=JSON array, e.g. input='[[0.1, ...]]'")
    ] = None,
    data: Annotated[str | None, typer.Option("--data", help="a whole OIP v2 JSON body, or @FILE")] = None,
    version: Annotated[str | None, typer.Option(help="a specific version")] = None,
) -> None:
    """Run one inference through the gateway and print the outputs and the latency."""
    st = state(ctx)
    with st.client() as c:
        if data is not None:
            text = (
                Path(data[1:]).read_text()
                if data.startswith("@")
                else (sys.stdin.read() if data == "-" else data)
            )
            body = json.loads(text)
        elif input:
            body = _inputs_body(c.model_metadata(deployment_id), input)
        else:
            raise typer.BadParameter("give --input NAME=JSON (repeatable) or --data BODY|@FILE")
        result = c.infer_json(deployment_id, body, version=version)
    if st.json:
        print_json({**result.raw, "latency_ms": result.latency_ms, "correlation_id": result.correlation_id})
        return
    rows = []
    for name, array in result.outputs.items():
        preview = np.array2string(array.ravel()[:10], precision=4, separator=", ")
        guess = (
            f" argmax {int(array.reshape(array.shape[0], -1)[0].argmax())}"
            if array.ndim == 2 and array.shape[1] > 1
            else ""
        )
        rows.append([name, str(array.dtype), list(array.shape), preview + guess])
    out.print(table(None, ["output", "dtype", "shape", "values"], rows))
    out.print(
        f"{result.latency_ms:.1f} ms · version {result.model_version} · "
        f"correlation id {result.correlation_id}"
    )


def _follow(path: Path, follow: bool, tail: int) -> Iterator[str]:
    with path.open(errors="replace") as f:
        lines = f.readlines()
        yield from lines[-tail:] if tail else lines
        while follow:
            line = f.readline()
            if line:
                yield line
            else:
                time.sleep(0.2)


def _execution_logs(c: Client, execution_id: str, follow: bool) -> None:
    """An execution's log; with follow, polls for new lines until the execution has ended."""
    seen = 0
    with c:
        try:
            while True:
                lines = c.execution_logs(execution_id)
                for line in lines[seen:]:
                    sys.stdout.write(f"{line.get('timestamp', '')} {line.get('message', '')}\n")
                sys.stdout.flush()
                seen = len(lines)
                if not follow:
                    return
                status = str(c.get_execution(execution_id).get("status", ""))
                if status.lower() in ("succeeded", "failed", "error"):
                    return
                time.sleep(1.0)
        except KeyboardInterrupt:
            return


def platform_log(home: Path) -> Path | None:
    """The log of the local platform in `home`: `up --detach`'s, else the newest the launcher
    (tests, bench) wrote."""
    detached = home / "logs" / "platform.log"
    if detached.exists():
        return detached
    launched = sorted(home.glob("platform-*.log"), key=lambda p: p.stat().st_mtime)
    return launched[-1] if launched else None


def logs(
    ctx: typer.Context,
    node: Annotated[str | None, typer.Argument(help="only this node's lines (e.g. node-1)")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
    tail: Annotated[int, typer.Option(help="start with the last N lines (0: all)")] = 100,
    correlation_id: Annotated[str | None, typer.Option(help="only lines of this request")] = None,
    execution: Annotated[str | None, typer.Option(help="an execution's log (batch jobs, pipelines)")] = None,
    home: Annotated[Path | None, typer.Option(help="the local platform's state directory")] = None,
) -> None:
    """The local platform's log (nodes and gateway), or an execution's log from the API."""
    st = state(ctx)
    if execution is not None:
        _execution_logs(st.client(), execution, follow)
        return
    path = platform_log(home or st.home or local_home())
    if path is None:
        err.print(
            "no platform log here: a platform started with `modelfleet up --detach` keeps one; "
            "`modelfleet up` in the foreground prints its log in its terminal"
        )
        raise typer.Exit(Exit.NOT_FOUND)
    pattern = re.compile(rf"(\s|\"){re.escape(node)}(\s|\")") if node else None
    try:
        for line in _follow(path, follow, tail):
            if pattern and not pattern.search(line):
                continue
            if correlation_id and correlation_id not in line:
                continue
            sys.stdout.write(line)
            sys.stdout.flush()
    except KeyboardInterrupt:
        return


def executions(
    ctx: typer.Context,
    deployment: Annotated[str | None, typer.Argument(help="a pipeline deployment (default: all)")] = None,
) -> None:
    """Executions of pipeline deployments, newest first."""
    st = state(ctx)
    with st.client() as c:
        names = [deployment] if deployment else [d["name"] for d in c.list_pipeline_deployments()]
        items = [x for name in names for x in c.list_executions(name)]
    items.sort(key=lambda x: str(x.get("created_at") or ""), reverse=True)
    if st.json:
        print_json(items)
        return
    out.print(
        table(
            None,
            ["execution", "status", "deployment", "pipeline", "created", "ended", "error"],
            [
                [
                    x.get("execution_id"),
                    styled(str(x.get("status", ""))),
                    x.get("deployment_name"),
                    x.get("pipeline_name"),
                    x.get("created_at"),
                    x.get("end_date") or "-",
                    x.get("error") or "",
                ]
                for x in items
            ],
        )
    )


def nodes(ctx: typer.Context) -> None:
    """The worker nodes (cloud and edge), their state and last heartbeat."""
    st = state(ctx)
    with st.client() as c:
        items = c.list_nodes()
    if st.json:
        print_json(items)
        return
    now = datetime.now(UTC)
    out.print(
        table(
            None,
            ["node", "kind", "state", "processors", "memory GiB", "pool", "last heartbeat"],
            [
                [
                    n.node_id,
                    n.kind.value,
                    styled(n.state.value),
                    n.processors,
                    f"{n.memory_bytes / 2**30:.1f}",
                    n.pool or "-",
                    ago(n.last_heartbeat, now),
                ]
                for n in items
            ],
        )
    )


@keys.command("create")
def keys_create(
    ctx: typer.Context,
    role: Annotated[list[Role], typer.Option("--role", "-r", help="admin, manage, infer (repeatable)")],
    name: Annotated[str, typer.Option()] = "",
    expires_in: Annotated[int | None, typer.Option(help="seconds until it expires")] = None,
) -> None:
    """Create a key; its secret is printed once (only a hash is stored)."""
    st = state(ctx)
    with st.client() as c:
        created = c.create_key(role, name=name, expires_in_seconds=expires_in)
    if st.json:
        print_json(created)
        return
    out.print(f"key [bold]{created.key.key_id}[/bold] ({', '.join(created.key.roles)}) created; shown once:")
    out.print(created.api_key, markup=False, highlight=False)


@keys.command("list")
def keys_list(ctx: typer.Context) -> None:
    st = state(ctx)
    with st.client() as c:
        items = c.list_keys()
    if st.json:
        print_json(items)
        return
    out.print(
        table(
            None,
            ["key id", "name", "roles", "state", "created", "expires"],
            [
                [
                    k.key_id,
                    k.name,
                    ",".join(k.roles),
                    styled(k.state.value),
                    k.created_at.isoformat(timespec="seconds"),
                    k.expires_at.isoformat(timespec="seconds") if k.expires_at else "-",
                ]
                for k in items
            ],
        )
    )


@keys.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: str) -> None:
    st = state(ctx)
    with st.client() as c:
        view = c.revoke_key(key_id)
    if st.json:
        print_json(view)
        return
    out.print(f"key {view.key_id} {styled(view.state.value)}")


def _event_line(e: StatusEvent) -> str:
    subject = e.deployment_id or e.node_id or e.aggregate_id
    where = f" on {e.node_id}" if e.node_id and e.deployment_id else ""
    change = f"{e.from_state or '-'} -> {e.to_state or '-'}"
    reason = f" ({e.reason})" if e.reason else ""
    return f"{e.at.isoformat(timespec='milliseconds')} {e.type.value} {subject}{where}: {change}{reason}"


def events(
    ctx: typer.Context,
    deployment_id: Annotated[str | None, typer.Argument(help="one deployment (default: all)")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new events")] = False,
    limit: Annotated[int, typer.Option()] = 100,
    interval: Annotated[float, typer.Option(help="seconds between polls with -f")] = 1.0,
) -> None:
    """Deployment status events, oldest first; with -f, new ones as they happen."""
    st = state(ctx)
    seen: set[str] = set()
    with st.client() as c:
        try:
            while True:
                ids = [deployment_id] if deployment_id else [d.deployment_id for d in c.list_deployments()]
                fresh: list[StatusEvent] = []
                for d in ids:
                    try:
                        fresh += [e for e in c.deployment_events(d, limit) if e.event_id not in seen]
                    except NotFound:
                        if deployment_id:
                            raise
                for e in sorted(fresh, key=lambda e: e.event_id):
                    seen.add(e.event_id)
                    if st.json:
                        sys.stdout.write(json.dumps(e.model_dump(mode="json")) + "\n")
                    else:
                        out.print(_event_line(e), markup=False, highlight=False)
                sys.stdout.flush()
                if not follow:
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            return
