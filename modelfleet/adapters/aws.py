"""boto3 clients for the configured endpoint, made on first use (never at import)."""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

from modelfleet.config import Settings

_lock = threading.Lock()
_clients: dict[tuple[str, str | None, str], Any] = {}


def client(service: str, settings: Settings) -> Any:
    key = (service, settings.aws_endpoint, settings.region)
    with _lock:
        found = _clients.get(key)
        if found is None:
            session: Any = boto3.session.Session()
            found = session.client(
                service,
                endpoint_url=settings.aws_endpoint,
                region_name=settings.region,
                config=Config(
                    retries={"max_attempts": 3, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=30,
                    max_pool_connections=32,
                    s3={"addressing_style": "path"},
                ),
            )
            _clients[key] = found
        return found
