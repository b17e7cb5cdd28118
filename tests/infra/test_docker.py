"""The worker image can't be built here (no docker): its Dockerfile and entrypoint are checked
against the project instead: the module it runs, the flags it passes, the extras it installs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "docker" / "worker.Dockerfile").read_text()
ENTRYPOINT = ROOT / "docker" / "entrypoint.py"


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_image_is_slim_non_root_with_a_healthcheck() -> None:
    assert re.findall(r"^FROM python:\$\{PYTHON_VERSION\}-slim", DOCKERFILE, re.M)
    assert re.search(r"^ARG PYTHON_VERSION=3\.11$", DOCKERFILE, re.M)
    users = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[.*entrypoint\.py\", \"--health\"\]", DOCKERFILE, re.M)
    assert 'ENTRYPOINT ["python", "/opt/modelfleet/entrypoint.py"]' in DOCKERFILE
    assert "COPY docker/entrypoint.py /opt/modelfleet/entrypoint.py" in DOCKERFILE


def test_the_extras_it_installs_exist_and_onnxruntime_is_always_there() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    extras = set(project["optional-dependencies"])
    named = set(re.findall(r"--build-arg EXTRAS=(\w+)", DOCKERFILE))
    assert named == {"torch"} and named <= extras
    assert any(d.startswith("torch==") for d in project["optional-dependencies"]["torch"])
    assert any(d.startswith("onnxruntime") for d in project["dependencies"])  # the default image's runtime


def test_the_entrypoint_runs_the_worker_with_flags_it_accepts() -> None:
    env = {
        **os.environ,
        "MODELFLEET_CONTROL_URL": "https://api.example.com",
        "MODELFLEET_PROCESSORS": "2",
        "MODELFLEET_MEMORY_BYTES": "3000000000",
        "MODELFLEET_NODE_ID": "ecs-abc",
        "MODELFLEET_HOST": "10.42.0.7",
    }
    out = subprocess.run(
        [sys.executable, str(ENTRYPOINT), "--print-command"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    argv = json.loads(out.stdout)
    assert argv[1:3] == ["-m", "modelfleet.worker"]
    flags = {a for a in argv if a.startswith("--")}
    usage = subprocess.run(
        [sys.executable, "-m", "modelfleet.worker", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert flags and all(f in usage for f in flags), flags - {f for f in flags if f in usage}
    assert argv[argv.index("--host") + 1] == "10.42.0.7" and argv[argv.index("--node-id") + 1] == "ecs-abc"
    assert argv[argv.index("--port") + 1] == "8081" and argv[argv.index("--data-port") + 1] == "8082"
    from infra.components.network import WORKER_DATA_PORT, WORKER_HTTP_PORT

    assert (WORKER_HTTP_PORT, WORKER_DATA_PORT) == (8081, 8082)  # the security group opens these
    missing = {k: v for k, v in env.items() if k != "MODELFLEET_CONTROL_URL"}
    failed = subprocess.run(
        [sys.executable, str(ENTRYPOINT), "--print-command"], env=missing, capture_output=True, text=True
    )
    assert failed.returncode != 0 and "MODELFLEET_CONTROL_URL" in failed.stderr


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def worker_http() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_the_health_check_follows_the_worker(worker_http: str, tmp_path: Path) -> None:
    health_file = tmp_path / "health-url"

    def check() -> int:
        env = {**os.environ, "MODELFLEET_HEALTH_FILE": str(health_file)}
        return subprocess.run([sys.executable, str(ENTRYPOINT), "--health"], env=env, check=False).returncode

    assert check() == 1  # not started: no address yet
    health_file.write_text(f"{worker_http}/healthz")
    assert check() == 0
    health_file.write_text(f"{worker_http}/not-health")
    assert check() == 1
