"""Authentication at the gateway: the same authorizer function the cloud's API Gateway runs,
with its verdicts cached in memory so a hot path costs a dictionary lookup."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.concurrency import run_in_threadpool

from functions import authorizer
from modelfleet.control.errors import ControlError, Unauthorized
from modelfleet.control.keys import VerdictCache, credential_from_headers
from schemas.keys import Principal


class AuthFailure(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Authenticator:
    def __init__(self, ttl_seconds: float = 10.0) -> None:
        self._cache = VerdictCache(ttl_seconds)

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        credential = credential_from_headers(headers)
        if not credential:
            raise AuthFailure(401, "unauthorized", "missing API key")
        hit = self._cache.get(credential)
        if hit is not None:
            return hit
        try:
            who = await run_in_threadpool(authorizer.authorize, {k.lower(): v for k, v in headers.items()})
        except Unauthorized as e:
            raise AuthFailure(401, e.code, e.message) from None
        except ControlError as e:
            raise AuthFailure(e.status, e.code, e.message) from None
        self._cache.put(credential, who)
        return who
