"""The agent's link to the control plane: register, long-poll the desired state, report status,
rotate the node key. TLS is verified against `ca_file` (or the system store); it is never turned
off unless the operator asks (`insecure=True`).

Errors: `Unreachable` (network, timeouts, 5xx: keep serving and retry with backoff) and
`Refused` (4xx: the credential or request is wrong; `status` says which).
"""

from __future__ import annotations

import random
from typing import Any

import httpx

from modelfleet.trust import tls_verify


class Unreachable(Exception):
    pass


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Backoff:
    """Exponential backoff with full jitter, so a fleet coming back does not arrive in step."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> None:
        self._base, self._cap = base, cap
        self._attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        ceiling = min(self._cap, self._base * 2**self._attempt)
        self._attempt = min(self._attempt + 1, 30)
        return self._rng.uniform(ceiling / 4, ceiling)

    def reset(self) -> None:
        self._attempt = 0

    def jitter(self, seconds: float) -> float:
        return seconds * self._rng.uniform(0.5, 1.5)


class ControlClient:
    def __init__(
        self,
        url: str,
        ca_file: str | None = None,
        insecure: bool = False,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=self.url,
            verify=tls_verify(ca_file, verify=not insecure),
            transport=transport,
            timeout=timeout,
        )
        self._key = ""

    def use_key(self, key: str) -> None:
        self._key = key

    @property
    def has_key(self) -> bool:
        return bool(self._key)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        headers["authorization"] = f"Bearer {key or self._key}"
        try:
            r = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as e:
            raise Unreachable(f"{method} {path}: {type(e).__name__}: {e}") from e
        if r.status_code >= 500:
            raise Unreachable(f"{method} {path}: HTTP {r.status_code}")
        if r.status_code >= 400:
            try:
                message = str(r.json().get("error", {}).get("message", r.text))
            except ValueError:
                message = r.text[:200]
            raise Refused(r.status_code, message)
        return r

    def register(self, token: str, name: str, resources: dict[str, Any]) -> dict[str, Any]:
        r = self._call("POST", "/api/v1/edge/nodes", key=token, json={"name": name, "resources": resources})
        doc: dict[str, Any] = r.json()
        return doc

    def poll(
        self, node_id: str, etag: str | None, wait: float
    ) -> tuple[dict[str, Any] | None, str | None, float]:
        """(desired or None if unchanged, its ETag, seconds to wait before polling again)."""
        headers = {"if-none-match": etag} if etag else {}
        r = self._call(
            "GET",
            f"/api/v1/edge/nodes/{node_id}/desired",
            params={"wait": f"{wait:g}"} if etag else {},
            headers=headers,
            timeout=httpx.Timeout(self._timeout, read=wait + self._timeout),
        )
        retry_after = float(r.headers.get("retry-after", "0") or 0)
        if r.status_code == 304:
            return None, etag, retry_after
        return r.json(), r.headers.get("etag"), retry_after

    def report(self, node_id: str, body: dict[str, Any]) -> None:
        self._call("POST", f"/api/v1/edge/nodes/{node_id}/status", json=body)

    def rotate_key(self, node_id: str) -> str:
        return str(self._call("POST", f"/api/v1/edge/nodes/{node_id}/key").json()["node_key"])
