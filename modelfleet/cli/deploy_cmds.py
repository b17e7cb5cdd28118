"""`models push|list`, `deploy SPEC.yaml` and `deployments list|get|stop|start|delete`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from modelfleet.cli.output import Exit, err, out, print_json, styled, table
from modelfleet.cli.spec import PENDING_MODEL_ID, ModelSource, SpecError, format_of, load_specs
from modelfleet.cli.state import state
from modelfleet.sdk.client import Client, file_sha256
from modelfleet.sdk.errors import Conflict, DeploymentFailed, WaitTimeout
from schemas.deployments import DeploymentCreate, DeploymentView
from schemas.models import ModelFormat, ModelView
from schemas.tensors import Signature

models = typer.Typer(help="Models: push files to the registry, list them.", no_args_is_help=True)
deployments = typer.Typer(help="Deployments: list, show, stop, start, delete.", no_args_is_help=True)


def push(
    c: Client,
    paths: list[Path],
    *,
    name: str,
    format: ModelFormat,
    version: str,
    model_id: str | None,
    signature: Signature | None,
    quiet: bool,
) -> ModelView:
    total = sum(p.stat().st_size for p in paths)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err,
        disable=quiet,
        transient=False,
    ) as progress:
        task = progress.add_task(f"pushing {name}", total=total)
        model = c.push_model(
            paths,
            name=name,
            format=format,
            version=version,
            model_id=model_id,
            signature=signature,
            progress=lambda n: progress.advance(task, n),
        )
    return model


@models.command("push")
def models_push(
    ctx: typer.Context,
    paths: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="model file(s); the first is loaded")
    ],
    name: Annotated[str | None, typer.Option(help="model name (default: the file's stem)")] = None,
    format: Annotated[
        ModelFormat | None, typer.Option(help="onnx or torchscript (default: from the suffix)")
    ] = None,
    version: Annotated[str, typer.Option()] = "1",
    model_id: Annotated[str | None, typer.Option(help="choose the model id (default: generated)")] = None,
    signature: Annotated[
        Path | None,
        typer.Option(exists=True, help="JSON signature {inputs, outputs} (required for torchscript)"),
    ] = None,
) -> None:
    """Upload a model (progress bar), verify every file's sha256 at commit, print its id and digest."""
    st = state(ctx)
    fmt = format or format_of(str(paths[0]))
    if fmt is None:
        err.print("[red]give --format[/red] (onnx or torchscript): the suffix does not tell")
        raise typer.Exit(Exit.USAGE)
    sig = Signature.model_validate(json.loads(signature.read_text())) if signature else None
    with st.client() as c:
        model = push(
            c,
            paths,
            name=name or paths[0].stem,
            format=fmt,
            version=version,
            model_id=model_id,
            signature=sig,
            quiet=st.json,
        )
    if st.json:
        print_json(model)
        return
    out.print(
        f"model [bold]{model.model_id}[/bold] {model.name} v{model.version} ({model.format.value}) "
        f"{styled(model.state.value)}"
    )
    for f in model.files:
        out.print(f"  {f.name}  sha256:{f.sha256}  {f.size_bytes} bytes")


@models.command("list")
def models_list(ctx: typer.Context) -> None:
    """The project's models."""
    st = state(ctx)
    with st.client() as c:
        items = c.list_models()
    if st.json:
        print_json(items)
        return
    out.print(
        table(
            None,
            ["model id", "name", "version", "format", "state", "size"],
            [
                [m.model_id, m.name, m.version, m.format.value, styled(m.state.value), m.size_bytes]
                for m in items
            ],
        )
    )


def _apply_deployment(c: Client, body: DeploymentCreate) -> tuple[DeploymentView, str]:
    """Create it, or bring an existing one with the same models to the spec's allocations."""
    try:
        return c.create_deployment(body), "created"
    except Conflict as e:
        if e.code != "deployment_exists":
            raise
        current = c.get_deployment(body.deployment_id)
    wanted = {body.model_id} if body.model_id else {v.model_id for v in body.versions or []}
    if {v.model_id for v in current.versions} != wanted:
        raise Conflict(
            409,
            "deployment_exists",
            f"deployment '{body.deployment_id}' exists with other models; delete it first "
            f"(modelfleet deployments delete {body.deployment_id})",
        )
    if any(v.allocations != body.allocations for v in current.versions):
        return c.update_deployment(
            body.deployment_id, allocations=body.allocations, version=current.version
        ), "updated"
    return current, "unchanged"


def deploy(
    ctx: typer.Context,
    spec_file: Annotated[Path, typer.Argument(help="YAML spec (one or more documents)")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="wait until started")] = True,
    timeout: Annotated[
        float | None, typer.Option(help="seconds to wait (default: the spec's deploy timeout)")
    ] = None,
    validate_only: Annotated[
        bool, typer.Option("--validate-only", help="check the spec; send nothing")
    ] = False,
) -> None:
    """Apply a declarative spec: push its model if it names a file, create (or resize) the
    deployment, and wait with a spinner until it is started, or fail with the reason."""
    st = state(ctx)
    try:
        specs = load_specs(spec_file)
    except SpecError as e:
        for p in e.problems:
            err.print(f"[red]error[/red] {p}", markup=True, highlight=False)
        raise typer.Exit(Exit.USAGE) from None
    if validate_only:
        if st.json:
            print_json([{"kind": s.kind, "source": s.source, "body": s.body} for s in specs])
        else:
            out.print(f"{spec_file}: {len(specs)} valid document(s)")
        return
    results = []
    with st.client() as c:
        for spec in specs:
            body = spec.body
            assert isinstance(body, DeploymentCreate)
            if spec.model is not None and body.model_id == PENDING_MODEL_ID:
                model = _push_source(c, spec.model, spec_file.parent, quiet=st.json)
                body = body.model_copy(update={"model_id": model.model_id})
            view, action = _apply_deployment(c, body)
            if not st.json:
                out.print(f"deployment [bold]{view.deployment_id}[/bold] {action}")
            if wait:
                view = _wait(c, view, timeout or body.deploy_timeout_seconds + 30.0, quiet=st.json)
            results.append(view)
    if st.json:
        print_json(results)


def _push_source(c: Client, source: ModelSource, base: Path, quiet: bool) -> ModelView:
    path = Path(source.path)
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        err.print(f"[red]model file {path} does not exist[/red]")
        raise typer.Exit(Exit.USAGE)
    fmt = source.format or format_of(str(path))
    assert fmt is not None  # parse_specs checked it
    model = push(
        c,
        [path],
        name=source.name or path.stem,
        format=fmt,
        version=source.version,
        model_id=source.model_id,
        signature=source.signature,
        quiet=quiet,
    )
    if not quiet:
        out.print(f"model [bold]{model.model_id}[/bold] pushed, sha256:{file_sha256(path)}")
    return model


def _wait(c: Client, view: DeploymentView, timeout: float, quiet: bool) -> DeploymentView:
    name = view.deployment_id
    with err.status(f"waiting for {name} to start…", spinner="dots") as spinner:

        def show(d: DeploymentView) -> None:
            if not quiet:
                spinner.update(
                    f"waiting for {name}: {d.state.value}" + (f" ({d.reason})" if d.reason else "")
                )

        try:
            done = c.wait_until_started(name, timeout=timeout, on_poll=show)
        except DeploymentFailed as e:
            err.print(f"[red]deployment {name} failed[/red]: {e.reason}")
            raise typer.Exit(Exit.FAILED) from None
        except WaitTimeout as e:
            err.print(f"[red]timed out[/red]: {e}")
            raise typer.Exit(Exit.TIMEOUT) from None
    if not quiet:
        out.print(
            f"deployment [bold]{name}[/bold] {styled(done.state.value)}: "
            f"POST {c.endpoint}{done.inference_url}"
        )
    return done


@deployments.command("list")
def deployments_list(ctx: typer.Context) -> None:
    """The project's deployments, of every kind."""
    st = state(ctx)
    with st.client() as c:
        items = c.list_deployments()
    if st.json:
        print_json(items)
        return
    out.print(
        table(
            None,
            ["deployment", "kind", "state", "versions (weight)", "allocations x threads"],
            [
                [
                    d.deployment_id,
                    d.kind.value,
                    styled(d.state.value),
                    ", ".join(f"{v.version_id} ({v.weight}%)" for v in d.versions),
                    ", ".join(f"{v.allocations}x{v.threads_per_allocation}" for v in d.versions),
                ]
                for d in items
            ],
        )
    )


@deployments.command("get")
def deployments_get(ctx: typer.Context, deployment_id: str) -> None:
    """One deployment, with its routing table."""
    st = state(ctx)
    with st.client() as c:
        d = c.get_deployment(deployment_id)
    if st.json:
        print_json(d)
        return
    out.print(f"[bold]{d.deployment_id}[/bold] ({d.kind.value}) {styled(d.state.value)} {d.reason}")
    out.print(
        table(
            "Routing table",
            ["node", "version", "routing state", "allocations", "reason"],
            [
                [
                    node,
                    r.version_id,
                    styled(r.routing_state.value),
                    f"{r.current_allocations}/{r.target_allocations}",
                    r.reason,
                ]
                for node, routes in d.routing_table.items()
                for r in routes
            ],
        )
    )


@deployments.command("stop")
def deployments_stop(ctx: typer.Context, deployment_id: str) -> None:
    with state(ctx).client() as c:
        out.print(f"{deployment_id}: {styled(c.stop_deployment(deployment_id).state.value)}")


@deployments.command("start")
def deployments_start(ctx: typer.Context, deployment_id: str) -> None:
    with state(ctx).client() as c:
        out.print(f"{deployment_id}: {styled(c.start_deployment(deployment_id).state.value)}")


@deployments.command("delete")
def deployments_delete(
    ctx: typer.Context,
    deployment_id: str,
    force: Annotated[bool, typer.Option(help="delete even while it serves")] = False,
) -> None:
    with state(ctx).client() as c:
        c.delete_deployment(deployment_id, force=force)
    out.print(f"deleted {deployment_id}")
