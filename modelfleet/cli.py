"""`modelfleet` command line: `modelfleet up` runs the local platform in the foreground."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelfleet")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the local platform in the foreground (Ctrl-C stops it)")
    up.add_argument("--port", type=int, default=int(os.environ.get("MODELFLEET_PORT", "8080")))
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--home", type=Path, default=Path(os.environ.get("MODELFLEET_HOME", ".modelfleet")))
    up.add_argument("--nodes", type=int, default=int(os.environ.get("MODELFLEET_NODES", "2")))
    up.add_argument("--node-processors", type=int, default=None)
    up.add_argument("--node-memory-bytes", type=int, default=None)
    up.add_argument("--no-example", action="store_true", help="do not deploy the digits example")
    up.add_argument("--heartbeat-interval", type=float, default=1.0)
    up.add_argument("--node-lost-after", type=float, default=5.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("botocore", "urllib3", "httpx", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.command == "up":
        from modelfleet.local.platform import LocalPlatform, PlatformOptions

        opts = PlatformOptions(
            home=args.home,
            port=args.port,
            host=args.host,
            nodes=args.nodes,
            node_processors=args.node_processors,
            node_memory_bytes=args.node_memory_bytes,
            example=not args.no_example,
            heartbeat_interval=args.heartbeat_interval,
            node_lost_after=args.node_lost_after,
        )
        return LocalPlatform(opts).run()
    return 2


if __name__ == "__main__":
    sys.exit(main())
