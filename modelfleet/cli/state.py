"""The CLI's global options (endpoint, profile, CA, output mode), shared by every command."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from modelfleet.sdk.client import Client
from modelfleet.sdk.profiles import Resolved, resolve


@dataclass
class State:
    endpoint: str | None = None
    profile: str | None = None
    ca_file: str | None = None
    insecure: bool = False
    json: bool = False
    home: Path | None = None
    timeout: float = 60.0
    argv: tuple[str, ...] = ()  # the command line, for `up --detach` to start itself again

    def resolved(self) -> Resolved:
        return resolve(self.endpoint, self.profile, self.ca_file, self.home)

    def client(self) -> Client:
        r = self.resolved()
        if r.api_key is None:
            from modelfleet.cli.output import Exit, err

            err.print(
                "[red]no API key[/red]: set MODELFLEET_API_KEY, or store one with "
                f"`modelfleet configure --profile {r.profile}` (kept in a 0600 credentials file)"
            )
            raise typer.Exit(Exit.AUTH)
        return Client(
            r.endpoint, r.api_key, timeout=self.timeout, ca_file=r.ca_file, verify=not self.insecure
        )


def state(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj
