"""Access tokens of the pipeline face, and endpoint tokens.

The client's `sdk_token` is a platform API key (`id:secret`). `POST /auth/refresh` checks the key
in the store every time (no cached verdict: a revoked key stops working at its next refresh) and
answers a short-lived HS256 JWT with `iat` and `exp`, signed with a per-platform secret. Requests
then carry `Authorization: Bearer <jwt>`; verifying one needs no store read.

Endpoint tokens (`Authorization: EndpointToken <t>`) are shown once and stored as a SHA-256 hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

import jwt

from modelfleet.control.errors import Unauthorized
from modelfleet.control.keys import hash_secret, split_credential
from modelfleet.control.repository import Repository
from schemas.keys import KeyState, Principal, Role

ISSUER = "modelfleet-pipelines"
ALGORITHM = "HS256"
CLOCK_SKEW_SECONDS = 60


def principal_of_api_key(repo: Repository, credential: str, now: datetime) -> Principal:
    """The key's principal, read from the store now (never from a verdict cache)."""
    try:
        key_id, secret = split_credential(credential)
    except Exception:
        raise Unauthorized("the refresh token is not an API key (id:secret)") from None
    rec = repo.get_key(key_id)
    if rec is None or not hmac.compare_digest(rec.secret_sha256, hash_secret(secret)):
        raise Unauthorized("invalid refresh token")
    state = rec.state(now)
    if state == KeyState.REVOKED:
        raise Unauthorized("this API key was revoked")
    if state == KeyState.EXPIRED:
        raise Unauthorized("this API key has expired")
    return Principal(
        key_id=rec.key_id, project_id=rec.project_id, roles=frozenset(rec.roles), expires_at=rec.expires_at
    )


def issue(principal: Principal, secret: str, now: datetime, lifetime_seconds: int) -> str:
    exp = now + timedelta(seconds=lifetime_seconds)
    if principal.expires_at is not None and principal.expires_at < exp:
        exp = principal.expires_at  # a token never outlives its key
    claims = {
        "iss": ISSUER,
        "sub": principal.key_id,
        "project_id": principal.project_id,
        "roles": sorted(r.value for r in principal.roles),
        "iat": int(now.timestamp()),
        "exp": int(exp.timestamp()),
        "jti": secrets.token_hex(8),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(token: str, secret: str, now: datetime) -> Principal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={
                "require": ["exp", "iat", "sub", "project_id"],
                "verify_exp": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError as e:
        raise Unauthorized(f"invalid access token: {e}") from None
    # times are checked against the caller's `now`, not the library's clock read
    if int(claims["exp"]) <= int(now.timestamp()):
        raise Unauthorized("the access token has expired; refresh it")
    if int(claims["iat"]) > int(now.timestamp()) + CLOCK_SKEW_SECONDS:
        raise Unauthorized("the access token was issued in the future")
    return Principal(
        key_id=str(claims["sub"]),
        project_id=str(claims["project_id"]),
        roles=frozenset(Role(r) for r in claims.get("roles", []) if r in Role._value2member_map_),
    )


def new_endpoint_token() -> str:
    return secrets.token_urlsafe(32)


def hash_endpoint_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def endpoint_token_matches(token: str | None, stored_sha256: str | None) -> bool:
    if not token or not stored_sha256:
        return False
    return hmac.compare_digest(hash_endpoint_token(token), stored_sha256)
