"""The worker container's entrypoint: run `python -m modelfleet.worker` for this task.

On ECS (awsvpc) the node id is `ecs-<task id>` and the address the task's private IP, both from
the task metadata endpoint (ECS_CONTAINER_METADATA_URI_V4); elsewhere the container's hostname
and its address. The worker binds to that address, so the URL it registers is the one the invoke
router reaches. `--health` checks the running worker (HEALTHCHECK, the ECS health check);
`--print-command` prints the command instead of running it.

Environment: MODELFLEET_CONTROL_URL (required), MODELFLEET_NODE_KEY (required, read by the
worker), MODELFLEET_PROCESSORS, MODELFLEET_MEMORY_BYTES, MODELFLEET_NODE_ID, MODELFLEET_HOST.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.request
from pathlib import Path

HTTP_PORT = 8081
DATA_PORT = 8082
MODEL_DIR = "/var/lib/modelfleet/models"
HEALTH_FILE = Path(os.environ.get("MODELFLEET_HEALTH_FILE", "/tmp/modelfleet-health-url"))


def _task_metadata() -> tuple[str, str] | None:
    """(task id, private IP) from ECS's task metadata endpoint v4, if there is one."""
    base = os.environ.get("ECS_CONTAINER_METADATA_URI_V4")
    if not base:
        return None
    with urllib.request.urlopen(f"{base}/task", timeout=2) as r:
        task = json.load(r)
    task_id = task["TaskARN"].rsplit("/", 1)[1]
    ip = task["Containers"][0]["Networks"][0]["IPv4Addresses"][0]
    return task_id, ip


def command(env: dict[str, str]) -> list[str]:
    control_url = env.get("MODELFLEET_CONTROL_URL")
    if not control_url:
        raise SystemExit("MODELFLEET_CONTROL_URL is not set")
    meta = _task_metadata()
    hostname = socket.gethostname()
    node_id = env.get("MODELFLEET_NODE_ID") or (f"ecs-{meta[0]}" if meta else hostname)
    host = env.get("MODELFLEET_HOST") or (meta[1] if meta else socket.gethostbyname(hostname))
    args = [
        sys.executable, "-m", "modelfleet.worker",
        "--node-id", node_id,
        "--control-url", control_url,
        "--host", host,
        "--port", str(HTTP_PORT),
        "--data-port", str(DATA_PORT),
        "--model-dir", env.get("MODELFLEET_MODEL_DIR", MODEL_DIR),
    ]  # fmt: skip
    if env.get("MODELFLEET_PROCESSORS"):
        args += ["--processors", env["MODELFLEET_PROCESSORS"]]
    if env.get("MODELFLEET_MEMORY_BYTES"):
        args += ["--memory-bytes", env["MODELFLEET_MEMORY_BYTES"]]
    return args


def health() -> int:
    try:
        url = HEALTH_FILE.read_text().strip()
        with urllib.request.urlopen(url, timeout=3) as r:
            return 0 if r.status == 200 else 1
    except (OSError, ValueError):
        return 1


def main(argv: list[str]) -> int:
    if "--health" in argv:
        return health()
    args = command(dict(os.environ))
    if "--print-command" in argv:
        print(json.dumps(args))
        return 0
    host = args[args.index("--host") + 1]
    Path(args[args.index("--model-dir") + 1]).mkdir(parents=True, exist_ok=True)
    HEALTH_FILE.write_text(f"http://{host}:{HTTP_PORT}/healthz")
    os.execv(sys.executable, args)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
