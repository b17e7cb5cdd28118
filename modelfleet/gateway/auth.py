"""Authentication at the gateway: the same authorizer function the cloud's API Gateway runs.

Verdicts are cached by the key service (one cache per process, which revocation clears, and
whose entries end when their key expires), so a hot path costs a dictionary lookup and only a
miss goes to the store, on a worker thread.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.concurrency import run_in_threadpool

from functions import authorizer
from modelfleet.control.container import control_plane, utcnow
from modelfleet.control.errors import ControlError
from modelfleet.control.keys import credential_from_headers
from schemas.keys import Principal


class AuthFailure(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Authenticator:
    def __init__(self) -> None:
        self._keys = control_plane().keys

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        credential = credential_from_headers(headers)
        if not credential:
            raise AuthFailure(401, "unauthorized", "missing API key")
        hit = self._keys.cached(credential, utcnow())
        if hit is not None:
            return hit
        try:
            return await run_in_threadpool(authorizer.authorize, {k.lower(): v for k, v in headers.items()})
        except ControlError as e:
            raise AuthFailure(e.status, e.code, e.message) from None
