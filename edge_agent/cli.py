"""`modelfleet-agent`: run the edge agent on a device.

    modelfleet-agent run --control-url https://cp.example --data-dir /var/lib/modelfleet-agent \\
        --token mfk_...:... [--ca-file ca.pem] [--port 8500]
    modelfleet-agent rotate-key --data-dir DIR [--control-url URL] [--ca-file ca.pem]

The token is needed once: the node key it is exchanged for is kept (0600) in the data directory,
as are the desired state and the verified models, so a restart without network serves at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from edge_agent.agent import AgentConfig, EdgeAgent
from edge_agent.server import serve
from modelfleet.trust import CA_FILE_ENV


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="modelfleet-agent", description="The modelfleet edge agent.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("run", "rotate-key"):
        s = sub.add_parser(name)
        s.add_argument(
            "--data-dir", type=Path, default=Path(os.environ.get("MODELFLEET_AGENT_HOME", ".agent"))
        )
        s.add_argument("--control-url", default=os.environ.get("MODELFLEET_CONTROL_URL", ""))
        s.add_argument(
            "--ca-file",
            default=os.environ.get(CA_FILE_ENV) or None,
            help="CA bundle the control plane's certificate must chain to",
        )
        s.add_argument("--insecure", action="store_true", help="do not verify TLS (never the default)")
    run = sub.choices["run"]
    run.add_argument("--token", default=os.environ.get("MODELFLEET_REGISTRATION_TOKEN") or None)
    run.add_argument("--name", default="")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8500)
    run.add_argument("--poll-wait", type=float, default=20.0)
    run.add_argument("--heartbeat-interval", type=float, default=10.0)
    run.add_argument("--keep-previous", type=int, default=1)
    run.add_argument("--backoff-cap", type=float, default=30.0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    data_dir: Path = args.data_dir
    known = _known_url(data_dir)
    url = args.control_url or known
    if not url:
        print("give --control-url", file=sys.stderr)
        return 2
    config = AgentConfig(
        data_dir=data_dir,
        control_url=url,
        ca_file=args.ca_file,
        insecure=args.insecure,
        token=getattr(args, "token", None),
        name=getattr(args, "name", ""),
        poll_wait=getattr(args, "poll_wait", 20.0),
        heartbeat_interval=getattr(args, "heartbeat_interval", 10.0),
        keep_previous=getattr(args, "keep_previous", 1),
        backoff_cap=getattr(args, "backoff_cap", 30.0),
    )
    agent = EdgeAgent(config)
    if args.command == "rotate-key":
        if agent.identity is None:
            print("not registered", file=sys.stderr)
            return 2
        agent.control.use_key(agent.identity.node_key)
        agent.rotate_key()
        print(f"rotated the key of node {agent.node_id}")
        return 0
    agent.start()
    try:
        serve(agent, args.host, args.port, data_dir / "agent.json")
    finally:
        agent.stop()
    return 0


def _known_url(data_dir: Path) -> str:
    from edge_agent.storage import AgentStore

    ident = AgentStore(data_dir).identity() if data_dir.exists() else None
    return ident.control_url if ident else ""


if __name__ == "__main__":
    raise SystemExit(main())
