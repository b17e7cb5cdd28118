"""The local platform's AWS: a moto server on loopback whose writes survive restarts and `kill -9`.

    python -m modelfleet.local.aws_server --home DIR [--host 127.0.0.1] [--port 0]
        [--ephemeral-table NAME ...] [--fsync]

Replays `DIR/journal.jsonl` into a fresh moto app, then serves it with every successful mutating request
journaled (see `modelfleet.local.aws_journal`). When listening it prints one line to stdout,
`MOTO_READY http://127.0.0.1:<port> replayed=<n>`, and writes `DIR/endpoint.json` {"endpoint", "pid"}.
It exits with status 0 on SIGTERM/SIGINT, and by itself when its parent process dies.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any
from wsgiref.types import WSGIApplication

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from modelfleet.local.lifeline import exit_with_parent

log = logging.getLogger("modelfleet.local.aws_server")

AWS_ENV_DEFAULTS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
LOCK_WAIT_SECONDS = 10.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m modelfleet.local.aws_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--home", required=True, type=Path, help="state directory (journal.jsonl, blobs/)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", default=0, type=int, help="0 picks a free port")
    parser.add_argument(
        "--ephemeral-table",
        action="append",
        default=[],
        metavar="NAME",
        help="DynamoDB table whose item writes are not journaled (repeatable)",
    )
    parser.add_argument(
        "--fsync", action="store_true", help="fsync every journal append (survives power loss)"
    )
    return parser.parse_args(argv)


def lock_home(home: Path) -> IO[bytes]:
    """Hold an exclusive lock on DIR so two servers never append to one journal (bounded wait)."""
    fh = (home / "journal.lock").open("ab")
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fh
        except BlockingIOError:
            if time.monotonic() > deadline:
                fh.close()
                raise SystemExit(f"aws_server: {home} is in use by another server") from None
            time.sleep(0.05)


def write_endpoint(home: Path, endpoint: str) -> None:
    tmp = home / f".endpoint.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"endpoint": endpoint, "pid": os.getpid()}))
    os.replace(tmp, home / "endpoint.json")


def remove_endpoint(home: Path) -> None:
    path = home / "endpoint.json"
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


def moto_app() -> WSGIApplication:
    """moto's `DomainDispatcherApplication(create_backend_app)`, with its host -> backend lookup cached:
    moto lists its package directory on every request to resolve it (~40% of a replayed PutItem)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    backend_for_host: dict[str | None, Any] = {}

    class Dispatcher(DomainDispatcherApplication):
        def get_backend_for_host(self, host: str | None) -> Any:
            if host not in backend_for_host:  # called under self.lock
                backend_for_host[host] = super().get_backend_for_host(host)
            return backend_for_host[host]

    return Dispatcher(create_backend_app)


def quiet_request_handler() -> type[WSGIRequestHandler]:
    """moto's request handler (it keeps underscores in x-amz-meta-* names), minus the access log."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class QuietRequestHandler(MotoRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    return QuietRequestHandler


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for name, value in AWS_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)  # before moto is imported: nothing may reach real AWS
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    stop = threading.Event()
    servers: list[BaseWSGIServer] = []

    def shutdown() -> None:
        stop.set()
        for server in servers:  # serve_forever runs in the main thread: stop it from another one
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, lambda signum, frame: shutdown())
    signal.signal(signal.SIGINT, lambda signum, frame: shutdown())
    exit_with_parent(shutdown)

    home: Path = args.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    lock = lock_home(home)
    from modelfleet.local import aws_transactions
    from modelfleet.local.aws_journal import Journal, JournalingApp, replay
    from modelfleet.local.aws_ranged_reads import RangedReads

    aws_transactions.install()  # before replay: the journal's transactions run through it too
    backend = moto_app()
    journal_path = home / "journal.jsonl"
    started = time.monotonic()
    replayed = replay(backend, journal_path)
    if replayed:
        elapsed = time.monotonic() - started
        log.info("replayed %d records in %.2fs (%.0f/s)", replayed, elapsed, replayed / max(elapsed, 1e-9))
    app = JournalingApp(
        RangedReads(backend), Journal(journal_path, fsync=args.fsync), frozenset(args.ephemeral_table)
    )
    server = make_server(args.host, args.port, app, threaded=True, request_handler=quiet_request_handler())
    try:
        if stop.is_set():  # a signal arrived during replay
            return 0
        servers.append(server)
        host = "127.0.0.1" if args.host in ("0.0.0.0", "", "::") else args.host
        endpoint = f"http://{f'[{host}]' if ':' in host else host}:{server.server_address[1]}"
        write_endpoint(home, endpoint)
        print(f"MOTO_READY {endpoint} replayed={replayed}", flush=True)
        sys.stdout = sys.stderr  # moto print()s diagnostics: keep stdout to the one READY line
        if not stop.is_set():
            server.serve_forever()
    finally:
        server.server_close()
        app.close()
        remove_endpoint(home)
        lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
