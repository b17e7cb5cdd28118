"""HTTP adapter towards worker nodes: a best-effort nudge so a node syncs at once instead of at
its next heartbeat (losing a nudge costs one heartbeat interval, never correctness), and the
Elasticsearch cache clear, which must reach every node hosting the deployment."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable

import httpx


class NodeNudger:
    def __init__(self, timeout_seconds: float = 0.5) -> None:
        self._timeout = timeout_seconds

    def nudge(self, urls: Iterable[str]) -> None:
        targets = sorted(set(urls))
        if targets:
            threading.Thread(target=self._send, args=(targets,), daemon=True).start()

    def _send(self, urls: list[str]) -> None:
        with httpx.Client(timeout=self._timeout) as c:
            for url in urls:
                with contextlib.suppress(httpx.HTTPError):
                    c.post(url.rstrip("/") + "/_sync")

    def clear_cache(self, urls: Iterable[str], deployment_uid: str) -> None:
        """Empty the deployment's inference cache on each node. A node that cannot be reached
        has lost its cache anyway (it restarts empty); it is skipped."""
        with httpx.Client(timeout=max(self._timeout, 2.0)) as c:
            for url in sorted(set(urls)):
                with contextlib.suppress(httpx.HTTPError):
                    c.post(f"{url.rstrip('/')}/_cache/{deployment_uid}/_clear")
