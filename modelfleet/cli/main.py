"""The `modelfleet` command (typer + rich), built on the SDK (`modelfleet.Client`).

Global options pick the platform (`--endpoint`, `--profile`, `--ca-file`; see
`modelfleet/sdk/profiles.py` for the order) and the output (`--json`). Exit codes are
`output.Exit`: 0 ok, 2 usage or invalid spec, 3 not found, 4 auth, 5 conflict, 6 deployment
failed, 7 timeout, 8 unreachable, 9 busy (429), 1 anything else.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import click
import typer

from modelfleet.cli import deploy_cmds, ops_cmds, platform_cmds
from modelfleet.cli.output import Exit, err, exit_code
from modelfleet.cli.spec import SpecError
from modelfleet.cli.state import State
from modelfleet.sdk.errors import ApiError, ModelfleetError

app = typer.Typer(
    name="modelfleet",
    help="Deploy ONNX and TorchScript models as endpoints, locally or on a deployed platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def options(
    ctx: typer.Context,
    endpoint: Annotated[
        str | None, typer.Option(help="platform URL (default: profile, else the local platform)")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="profile of the config file")] = None,
    ca_file: Annotated[
        str | None, typer.Option(help="CA bundle for an HTTPS gateway with a private CA")
    ] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="do not verify TLS certificates")] = False,
    json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    home: Annotated[
        Path | None, typer.Option(help="local platform state dir (default $MODELFLEET_HOME)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds per HTTP request")] = 60.0,
) -> None:
    st = ctx.obj if isinstance(ctx.obj, State) else State()
    st.endpoint, st.profile, st.ca_file, st.insecure = endpoint, profile, ca_file, insecure
    st.json, st.home, st.timeout = json, home, timeout
    ctx.obj = st


app.command()(platform_cmds.up)
app.command()(platform_cmds.down)
app.command()(platform_cmds.status)
app.command()(platform_cmds.configure)
app.add_typer(deploy_cmds.models, name="models")
app.command()(deploy_cmds.deploy)
app.add_typer(deploy_cmds.deployments, name="deployments")
app.command()(ops_cmds.invoke)
app.command()(ops_cmds.logs)
app.command()(ops_cmds.executions)
app.command()(ops_cmds.nodes)
app.add_typer(ops_cmds.keys, name="keys")
app.command()(ops_cmds.events)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (never raises for a platform error)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app(args=args, prog_name="modelfleet", standalone_mode=False, obj=State(argv=tuple(args)))
    except click.exceptions.Abort:
        err.print("aborted")
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except SpecError as e:
        for p in e.problems:
            err.print(f"[red]error[/red] {p}", highlight=False)
        return Exit.USAGE
    except ApiError as e:
        err.print(f"[red]error[/red] {e.status} {e.code}: {e.message}", highlight=False)
        if e.details:
            err.print(e.details, highlight=False)
        return exit_code(e)
    except ModelfleetError as e:
        err.print(f"[red]error[/red] {e}", highlight=False)
        return exit_code(e)
    return result if isinstance(result, int) else Exit.OK
