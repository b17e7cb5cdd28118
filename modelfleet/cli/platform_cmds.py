"""`up`, `down`, `status` and `configure`: the local platform and where the CLI points."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import psutil
import typer
from rich.console import Group
from rich.live import Live

from modelfleet.cli.output import Exit, ago, err, out, print_json, styled, table
from modelfleet.cli.state import state
from modelfleet.observability.logs import configure_logging
from modelfleet.sdk.client import Client
from modelfleet.sdk.profiles import (
    config_path,
    credentials_path,
    local_home,
    write_credential,
    write_profile,
)
from schemas.deployments import RouteView

TEXT_LOG = "%(asctime)s %(name)s %(levelname)s %(message)s"


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def up(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="gateway port (0: any free one)")] = int(
        os.environ.get("MODELFLEET_PORT", "8080")
    ),
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    home: Annotated[
        Path | None, typer.Option(help="state directory (default $MODELFLEET_HOME or .modelfleet)")
    ] = None,
    nodes: Annotated[int, typer.Option()] = int(os.environ.get("MODELFLEET_NODES", "2")),
    node_processors: Annotated[int | None, typer.Option()] = None,
    node_memory_bytes: Annotated[int | None, typer.Option()] = None,
    no_example: Annotated[
        bool, typer.Option("--no-example", help="do not deploy the digits example")
    ] = False,
    heartbeat_interval: Annotated[float, typer.Option()] = 1.0,
    node_lost_after: Annotated[float, typer.Option()] = 5.0,
    tls: Annotated[str | None, typer.Option(help="'self-signed' serves HTTPS with a local CA")] = None,
    log_format: Annotated[
        str | None, typer.Option(help="text or json (default $MODELFLEET_LOG_FORMAT)")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="run in the background; logs go to HOME/logs/platform.log")
    ] = False,
) -> None:
    """Run the local platform (AWS stand-in, gateway, nodes) in the foreground; Ctrl-C stops it."""
    home = home or state(ctx).home or local_home()
    if detach:
        raise typer.Exit(_detach(home, list(state(ctx).argv)))
    configure_logging("modelfleet-gateway", TEXT_LOG, log_format)
    from modelfleet.local.platform import LocalPlatform, PlatformOptions

    opts = PlatformOptions(
        home=home,
        port=port,
        host=host,
        nodes=nodes,
        node_processors=node_processors,
        node_memory_bytes=node_memory_bytes,
        example=not no_example,
        heartbeat_interval=heartbeat_interval,
        node_lost_after=node_lost_after,
    )
    if tls is not None:
        opts.tls = tls
    raise typer.Exit(LocalPlatform(opts).run())


def _detach(home: Path, argv: list[str]) -> int:
    """Start `up` again without --detach as a background session, and wait until it serves."""
    args = [a for a in argv if a not in ("--detach", "-d")]
    log_path = home / "logs" / "platform.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    run_file = home / "run" / "platform.json"
    run_file.unlink(missing_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelfleet", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "MODELFLEET_HOME": str(home)},
        )
    deadline = time.monotonic() + 120
    with err.status("starting the local platform…"):
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                err.print(f"[red]the platform exited ({proc.returncode})[/red]; see {log_path}")
                return Exit.ERROR
            if run_file.exists() and "ready" in log_path.read_text(errors="replace").splitlines()[-50:]:
                url = json.loads(run_file.read_text())["url"]
                out.print(f"modelfleet is serving on {url} (pid {proc.pid}); logs: {log_path}")
                return Exit.OK
            time.sleep(0.2)
    err.print(f"[red]the platform did not become ready in 120 s[/red]; see {log_path}")
    return Exit.TIMEOUT


def down(
    ctx: typer.Context,
    home: Annotated[Path | None, typer.Option(help="state directory of the platform to stop")] = None,
    timeout: Annotated[float, typer.Option()] = 60.0,
) -> None:
    """Stop the local platform running in HOME (as Ctrl-C would) and wait until it has exited."""
    home = home or state(ctx).home or local_home()
    run_file = home / "run" / "platform.json"
    if not run_file.exists():
        out.print(f"no local platform is running in {home}")
        raise typer.Exit(Exit.OK)
    pid = int(json.loads(run_file.read_text())["pid"])
    try:
        proc = psutil.Process(pid)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=timeout)
    except psutil.NoSuchProcess:
        run_file.unlink(missing_ok=True)
    except psutil.TimeoutExpired:
        err.print(f"[red]the platform (pid {pid}) did not stop in {timeout:g}s[/red]")
        raise typer.Exit(Exit.TIMEOUT) from None
    out.print(f"stopped the platform in {home}")


def route_text(r: RouteView) -> str:
    return f"v{r.version_id} {r.routing_state.value} {r.current_allocations}/{r.target_allocations}"


def _status_view(c: Client, endpoint: str) -> tuple[dict[str, object], Group]:
    nodes = c.list_nodes()
    deployments = c.list_deployments()
    now = datetime.now(UTC)
    node_table = table(
        "Nodes",
        ["node", "kind", "state", "processors", "memory GiB", "last heartbeat"],
        [
            [
                n.node_id,
                n.kind.value,
                styled(n.state.value),
                n.processors,
                f"{n.memory_bytes / 2**30:.1f}",
                ago(n.last_heartbeat, now),
            ]
            for n in nodes
        ],
    )
    dep_table = table(
        "Deployments",
        ["deployment", "kind", "state", "versions (weight)", "routing table", "reason"],
        [
            [
                d.deployment_id,
                d.kind.value,
                styled(d.state.value),
                ", ".join(f"{v.version_id} ({v.weight}%)" for v in d.versions),
                "; ".join(
                    f"{node}: " + ", ".join(route_text(r) for r in routes)
                    for node, routes in d.routing_table.items()
                )
                or "-",
                d.reason,
            ]
            for d in deployments
        ],
    )
    data: dict[str, object] = {"endpoint": endpoint, "nodes": nodes, "deployments": deployments}
    return data, Group(f"[bold]{endpoint}[/bold]", node_table, dep_table)


def status(
    ctx: typer.Context,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="refresh every second until Ctrl-C")] = False,
) -> None:
    """Nodes, deployments and their routing tables."""
    st = state(ctx)
    with st.client() as c:
        data, view = _status_view(c, c.endpoint)
        if st.json:
            print_json(data)
            return
        if not watch:
            out.print(view)
            return
        try:
            with Live(view, console=out, refresh_per_second=2) as live:
                while True:
                    time.sleep(1.0)
                    live.update(_status_view(c, c.endpoint)[1])
        except KeyboardInterrupt:
            return


def configure(
    ctx: typer.Context,
    profile: Annotated[str, typer.Option(help="profile name")] = "default",
    endpoint: Annotated[str | None, typer.Option(help="the platform's URL")] = None,
    ca_file: Annotated[str | None, typer.Option(help="CA bundle of a self-signed gateway")] = None,
) -> None:
    """Save a profile (endpoint, CA) and its API key (read from stdin, stored in a 0600 file)."""
    settings = {k: v for k, v in {"endpoint": endpoint, "ca_file": ca_file}.items() if v}
    if settings:
        write_profile(config_path(), profile, settings)
    key = typer.prompt("API key (id:secret)", hide_input=True) if sys.stdin.isatty() else sys.stdin.readline()
    key = key.strip()
    if key:
        write_credential(credentials_path(), profile, key)
    out.print(f"profile {profile}: {config_path()}" + (f", key in {credentials_path()}" if key else ""))
