"""Where a client's endpoint, CA and API key come from, so scripts and the CLI agree.

Endpoint, first found: the explicit value, `$MODELFLEET_ENDPOINT`, the profile's `endpoint` in
the config file, the local platform's run file (`$MODELFLEET_HOME/run/platform.json`, which also
names its self-signed CA), else `http://127.0.0.1:8080`.

API key, first found: `$MODELFLEET_API_KEY`, else the profile's entry in the credentials file.
The credentials file holds secrets, so it is refused unless only its owner can read it (0600).

    # ~/.config/modelfleet/config.yaml ($MODELFLEET_CONFIG)
    default_profile: prod
    profiles:
      prod: {endpoint: "https://fleet.example.com", ca_file: "/etc/fleet-ca.pem"}

    # ~/.config/modelfleet/credentials.yaml ($MODELFLEET_CREDENTIALS), mode 0600
    prod: "mfk_...:..."
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelfleet.sdk.errors import ModelfleetError

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
DEFAULT_PROFILE = "default"


class ProfileError(ModelfleetError):
    """The configuration or credentials file is unusable (unreadable, malformed, too open)."""


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "modelfleet"


def config_path() -> Path:
    return Path(os.environ.get("MODELFLEET_CONFIG") or config_dir() / "config.yaml")


def credentials_path() -> Path:
    return Path(os.environ.get("MODELFLEET_CREDENTIALS") or config_dir() / "credentials.yaml")


def local_home() -> Path:
    return Path(os.environ.get("MODELFLEET_HOME") or ".modelfleet")


def _yaml_mapping(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ProfileError(f"{path} is not valid YAML: {e}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ProfileError(f"{path} must hold a mapping")
    return loaded


def read_credentials(path: Path) -> dict[str, str]:
    """profile -> API key, refusing a file that anyone but its owner may read or write."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ProfileError(
            f"{path} is readable or writable by others (mode {mode:04o}); it holds API keys: chmod 600 {path}"
        )
    return {str(k): str(v) for k, v in _yaml_mapping(path).items()}


def write_credential(path: Path, profile: str, api_key: str) -> None:
    """Add or replace one profile's key; the file is created 0600 (never briefly wider)."""
    current = read_credentials(path) if path.exists() else {}
    current[profile] = api_key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(current, f)
    os.replace(tmp, path)


def write_profile(path: Path, profile: str, settings: dict[str, str]) -> None:
    config = _yaml_mapping(path) if path.exists() else {}
    profiles = config.setdefault("profiles", {})
    profiles[profile] = {**profiles.get(profile, {}), **settings}
    config.setdefault("default_profile", profile)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(yaml.safe_dump(config))


@dataclass(frozen=True)
class Resolved:
    endpoint: str
    api_key: str | None
    ca_file: str | None
    profile: str
    source: str  # where the endpoint came from, for `status` and error messages


def resolve(
    endpoint: str | None = None,
    profile: str | None = None,
    ca_file: str | None = None,
    home: Path | None = None,
) -> Resolved:
    config = _yaml_mapping(config_path()) if config_path().exists() else {}
    name = (
        profile
        or os.environ.get("MODELFLEET_PROFILE")
        or str(config.get("default_profile") or DEFAULT_PROFILE)
    )
    settings = (config.get("profiles") or {}).get(name) or {}
    if profile and not settings and not credentials_path().exists():
        raise ProfileError(f"no profile '{profile}' in {config_path()}")
    run_file = (home or local_home()) / "run" / "platform.json"
    source, chosen_ca = "default", ca_file or settings.get("ca_file")
    if endpoint:
        source = "--endpoint"
    elif os.environ.get("MODELFLEET_ENDPOINT"):
        endpoint, source = os.environ["MODELFLEET_ENDPOINT"], "MODELFLEET_ENDPOINT"
    elif settings.get("endpoint"):
        endpoint, source = str(settings["endpoint"]), f"profile {name}"
    elif run_file.exists():
        run = json.loads(run_file.read_text())
        endpoint, source = str(run["url"]), f"local platform ({run_file})"
        chosen_ca = chosen_ca or run.get("ca_file")
    else:
        endpoint = DEFAULT_ENDPOINT
    key = os.environ.get("MODELFLEET_API_KEY") or None
    if key is None and credentials_path().exists():
        key = read_credentials(credentials_path()).get(name)
    return Resolved(endpoint.rstrip("/"), key, str(chosen_ca) if chosen_ca else None, name, source)
