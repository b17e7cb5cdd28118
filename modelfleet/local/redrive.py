"""Bring dead-lettered messages back: `python -m modelfleet.local.redrive QUEUE [--max N]`.

QUEUE is a logical queue name of the resource spec (`modelfleet/resources.py`, e.g.
`batch-tasks`). The command talks to the local platform's AWS stand-in (found in the run file
under `--home`), or to real AWS with `--aws` (the usual boto3 credentials; there, the same is
`aws sqs start-message-move-task --source-arn <the DLQ's ARN>`). Redrive after fixing what made
the messages fail: a message that fails again goes back to the DLQ after `maxReceiveCount`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from modelfleet.adapters import aws
from modelfleet.adapters.sqs import QueueConsumer, WorkQueue, redrive
from modelfleet.config import Settings
from modelfleet.resources import QUEUES


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m modelfleet.local.redrive", description=__doc__)
    p.add_argument("queue", choices=[q.logical for q in QUEUES])
    p.add_argument("--max", type=int, default=None, help="move at most this many messages")
    p.add_argument("--home", type=Path, default=Path(os.environ.get("MODELFLEET_HOME", ".modelfleet")))
    p.add_argument("--aws", action="store_true", help="real AWS, not the local platform")
    args = p.parse_args(argv)
    if not args.aws:
        run_file = args.home / "run" / "platform.json"
        if not run_file.exists():
            print(
                f"no local platform is running under {args.home} (start it, or pass --aws)", file=sys.stderr
            )
            return 2
        os.environ["MODELFLEET_AWS_ENDPOINT"] = json.loads(run_file.read_text())["aws_endpoint"]
        for k, v in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
            os.environ.setdefault(k, v)
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    settings = Settings.from_env()
    sqs = aws.client("sqs", settings)
    source = WorkQueue(sqs, QueueConsumer.url_for(sqs, settings.names.queue(args.queue)))
    dlq = WorkQueue(sqs, QueueConsumer.url_for(sqs, settings.names.dlq(args.queue)))
    moved = redrive(source, dlq, args.max)
    dlq_name, source_name = settings.names.dlq(args.queue), settings.names.queue(args.queue)
    print(f"moved {moved} message(s) from {dlq_name} to {source_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
