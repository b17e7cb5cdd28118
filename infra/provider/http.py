"""The provider's HTTP side: one client per call, errors with the platform's message."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import httpx

TIMEOUT_SECONDS = 60.0


class PlatformError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the platform answered {status}: {message}")
        self.status = status
        self.message = message


class NotYetAvailable(Exception):
    """A resource kind whose platform API has not landed yet."""


class PlatformApi:
    """Authenticated calls to the platform (`Authorization: Bearer id:secret`), any face."""

    def __init__(self, url: str, api_key: str, ca_file: str | None = None) -> None:
        verify: Any = ca_file or os.environ.get("MODELFLEET_CA_FILE") or True
        self.url = url.rstrip("/")
        self._verify = verify
        self._http = httpx.Client(
            base_url=self.url,
            timeout=TIMEOUT_SECONDS,
            verify=verify,
            headers={"authorization": f"Bearer {api_key}"},
        )

    @classmethod
    def of(cls, props: dict[str, Any]) -> PlatformApi:
        return cls(props["url"], props["api_key"], props.get("ca_file"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PlatformApi:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self._http.request(method, path, **kwargs)
        if r.status_code >= 400:
            raise PlatformError(r.status_code, _message(r))
        if r.status_code == 204 or not r.content:
            return None
        return r.json()

    def call_or_none(self, method: str, path: str, **kwargs: Any) -> Any:
        """None for a 404: what is gone is gone."""
        try:
            return self.call(method, path, **kwargs)
        except PlatformError as e:
            if e.status == 404:
                return None
            raise

    def upload(self, method: str, url: str, path: str, headers: dict[str, str]) -> None:
        """A presigned upload, straight to storage (no platform credential on it)."""
        with open(path, "rb") as f:
            r = httpx.request(method, url, content=f, headers=headers, timeout=300, verify=self._verify)
        if r.status_code >= 300:
            raise PlatformError(r.status_code, f"upload of {os.path.basename(path)} failed: {r.text[:300]}")


def _message(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:500]
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):  # native: {"error": {"code", "message"}}; ES: {"error": {"reason"}}
        return str(err.get("message") or err.get("reason") or err)
    return str(err or body)


def wait_until(what: str, check: Callable[[], bool], timeout: float, sleep: Callable[[float], None]) -> None:
    """Poll `check` until true; TimeoutError naming `what` after `timeout` seconds of polls."""
    interval, waited = 0.2, 0.0
    while not check():
        if waited >= timeout:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        sleep(interval)
        waited += interval
        interval = min(interval * 1.5, 2.0)
