"""Log format of the platform's processes: plain text for a terminal, or JSON lines through
powertools' Logger formatter (`MODELFLEET_LOG_FORMAT=json`), the format the Lambda handlers log
in the cloud. Keys passed as `extra=` (e.g. `correlation_id`, which the gateway sets from the
`x-correlation-id` header or its request id and forwards to the node) become JSON fields, so a
request can be followed gateway → node → execution log with one filter.
"""

from __future__ import annotations

import logging
import os
import sys

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

LOG_FORMAT_ENV = "MODELFLEET_LOG_FORMAT"
NOISY = ("botocore", "urllib3", "httpx", "werkzeug")


def json_formatter(service: str, **keys: str) -> logging.Formatter:
    formatter = LambdaPowertoolsFormatter(service=service)
    formatter.append_keys(**keys)
    return formatter


def configure_logging(service: str, text_format: str, fmt: str | None = None, **keys: str) -> None:
    """The root logger's one handler (stderr): JSON when `fmt` (default: $MODELFLEET_LOG_FORMAT)
    is "json", else `text_format`. `keys` are added to every JSON line (e.g. node_id)."""
    chosen = (fmt or os.environ.get(LOG_FORMAT_ENV) or "text").lower()
    handler = logging.StreamHandler(sys.stderr)
    if chosen == "json":
        handler.setFormatter(json_formatter(service, **keys))
    else:
        handler.setFormatter(logging.Formatter(text_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
