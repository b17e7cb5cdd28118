"""A worker node process: `python -m modelfleet.worker --node-id node-1 --control-url ...`.

It serves inference on two ports: the framed data port the gateway forwards to (data_server.py)
and HTTP (`/infer/...` for direct use, `/_sync`, `/healthz`).

The credential comes from MODELFLEET_NODE_KEY (id:secret). The process exits when its parent
dies, so a killed platform never leaves orphan nodes behind.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
from pathlib import Path

import psutil
import uvicorn

from modelfleet.local.lifeline import exit_with_parent
from modelfleet.observability.logs import configure_logging
from modelfleet.trust import tls_verify
from modelfleet.worker.agent import NodeAgent
from modelfleet.worker.data_ops import default_ops
from modelfleet.worker.data_server import DataServer
from modelfleet.worker.es_ops import es_infer_op
from modelfleet.worker.server import create_worker_app
from schemas.nodes import NodeKind, NodeRegister


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="modelfleet-worker")
    p.add_argument("--node-id", required=True)
    p.add_argument("--control-url", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--data-port", type=int, default=0, help="the framed data port the gateway uses")
    p.add_argument("--processors", type=int, default=os.cpu_count() or 1)
    p.add_argument("--memory-bytes", type=int, default=psutil.virtual_memory().total // 2)
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--pool", default=None)
    p.add_argument(
        "--max-tensor-elements",
        type=int,
        default=int(os.environ.get("MODELFLEET_MAX_TENSOR_ELEMENTS", "16000000")),
    )
    p.add_argument(
        "--ca-file",
        default=None,
        help="the CA bundle the control plane's certificate must chain to (default: $MODELFLEET_CA_FILE, "
        "else the system's)",
    )
    p.add_argument("--exit-with-parent", action="store_true")
    args = p.parse_args(argv)
    configure_logging(
        "modelfleet-node", f"%(asctime)s {args.node_id} %(levelname)s %(message)s", node_id=args.node_id
    )
    if args.exit_with_parent:
        exit_with_parent()
    credential = os.environ.get("MODELFLEET_NODE_KEY", "")
    if not credential:
        print("MODELFLEET_NODE_KEY is not set", file=sys.stderr)
        return 2

    sock = _bound(args.host, args.port)
    data_sock = _bound(args.host, args.data_port)
    port = sock.getsockname()[1]
    registration = NodeRegister(
        node_id=args.node_id,
        kind=NodeKind.CLOUD,
        processors=args.processors,
        memory_bytes=args.memory_bytes,
        url=f"http://{args.host}:{port}",
        data_url=f"tcp://{args.host}:{data_sock.getsockname()[1]}",
        pool=args.pool,
    )
    agent = NodeAgent(registration, args.control_url, credential, args.model_dir, tls_verify(args.ca_file))
    ops = default_ops(agent, args.max_tensor_elements)
    ops.register("es_infer", es_infer_op(agent))
    data_server = DataServer(data_sock, ops)
    data_server.start()
    threading.Thread(target=agent.run, name="agent", daemon=True).start()
    config = uvicorn.Config(
        create_worker_app(agent, args.max_tensor_elements),
        log_level="warning",
        access_log=False,
        timeout_keep_alive=75,
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        data_server.stop()
        agent.stop()
    return 0


def _bound(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


if __name__ == "__main__":
    sys.exit(main())
