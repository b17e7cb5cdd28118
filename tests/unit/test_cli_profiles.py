"""Where the CLI and SDK find the endpoint and the key: env, profiles, the local platform, and a
credentials file that is refused unless only its owner can read it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from modelfleet.cli import main
from modelfleet.cli.output import Exit
from modelfleet.sdk.profiles import (
    DEFAULT_ENDPOINT,
    ProfileError,
    read_credentials,
    resolve,
    write_credential,
)


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("MODELFLEET_ENDPOINT", "MODELFLEET_API_KEY", "MODELFLEET_PROFILE", "MODELFLEET_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODELFLEET_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.setenv("MODELFLEET_CREDENTIALS", str(tmp_path / "credentials.yaml"))
    monkeypatch.setenv("MODELFLEET_HOME", str(tmp_path / "home"))
    return tmp_path


def test_nothing_configured_means_the_default_local_endpoint_and_no_key() -> None:
    r = resolve()
    assert (r.endpoint, r.api_key, r.ca_file) == (DEFAULT_ENDPOINT, None, None)


def test_the_local_platform_run_file_gives_its_url_and_ca(clean_env: Path) -> None:
    run = clean_env / "home" / "run"
    run.mkdir(parents=True)
    (run / "platform.json").write_text(json.dumps({"url": "https://127.0.0.1:9999", "ca_file": "/x/ca.pem"}))
    r = resolve()
    assert (r.endpoint, r.ca_file) == ("https://127.0.0.1:9999", "/x/ca.pem")


def test_profile_then_env_then_flag(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / "config.yaml").write_text(
        "default_profile: prod\nprofiles:\n  prod: {endpoint: 'https://prod.example', ca_file: /etc/ca.pem}\n"
        "  dev: {endpoint: 'http://dev.example'}\n"
    )
    write_credential(clean_env / "credentials.yaml", "prod", "mfk_p:secret")
    r = resolve()
    assert (r.endpoint, r.api_key, r.ca_file, r.profile) == (
        "https://prod.example",
        "mfk_p:secret",
        "/etc/ca.pem",
        "prod",
    )
    assert resolve(profile="dev").endpoint == "http://dev.example"
    assert resolve(profile="dev").api_key is None
    monkeypatch.setenv("MODELFLEET_ENDPOINT", "http://env.example/")
    monkeypatch.setenv("MODELFLEET_API_KEY", "mfk_e:env")
    assert (resolve().endpoint, resolve().api_key) == ("http://env.example", "mfk_e:env")
    assert resolve(endpoint="http://flag.example").endpoint == "http://flag.example"


def test_credentials_are_written_0600_and_refused_when_readable_by_others(clean_env: Path) -> None:
    path = clean_env / "credentials.yaml"
    write_credential(path, "a", "mfk_a:1")
    write_credential(path, "b", "mfk_b:2")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_credentials(path) == {"a": "mfk_a:1", "b": "mfk_b:2"}
    os.chmod(path, 0o644)
    with pytest.raises(ProfileError, match="chmod 600"):
        read_credentials(path)


def test_the_cli_exits_with_auth_when_no_key_and_usage_for_a_bad_file(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--endpoint", "http://127.0.0.1:9", "nodes"]) == Exit.AUTH
    assert "MODELFLEET_API_KEY" in capsys.readouterr().err
    path = clean_env / "credentials.yaml"
    path.write_text("default: mfk_x:y\n")
    os.chmod(path, 0o640)
    assert main(["--endpoint", "http://127.0.0.1:9", "nodes"]) == Exit.ERROR
    assert "chmod 600" in capsys.readouterr().err


def test_an_unreachable_endpoint_exits_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELFLEET_API_KEY", "mfk_x:y")
    assert main(["--endpoint", "http://127.0.0.1:9", "nodes"]) == Exit.UNREACHABLE
