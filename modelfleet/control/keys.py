"""API keys: creation, verification, revocation, and the bootstrap admin key.

A key is written `id:secret`. The id is public and prefixed (`mfk_...`); only the secret's
SHA-256 is stored. Every face's header is parsed into that one credential string here.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta

from modelfleet.adapters.errors import ConditionFailed
from modelfleet.control.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from modelfleet.control.repository import Repository
from schemas.keys import ApiKeyRecord, KeyCreate, KeyCreated, KeyView, Principal, Role
from schemas.projects import DEFAULT_PROJECT, ProjectRecord

KEY_PREFIX = "mfk_"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_credential() -> tuple[str, str]:
    return KEY_PREFIX + secrets.token_hex(8), secrets.token_urlsafe(32)


def split_credential(credential: str) -> tuple[str, str]:
    key_id, sep, secret = credential.partition(":")
    if not sep or not key_id or not secret:
        raise Unauthorized("an API key is written 'id:secret'")
    return key_id, secret


def credential_from_headers(headers: Mapping[str, str]) -> str | None:
    """The `id:secret` credential from whichever header a face uses (lower-case header names).

    Accepted: `Authorization: Bearer id:secret`, `Authorization: ApiKey base64(id:secret)` (as
    Elasticsearch clients send it) or `ApiKey id:secret`, `X-Api-Key: id:secret`,
    `X-Auth-Token: id:secret`.
    """
    auth = headers.get("authorization", "")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        value = value.strip()
        scheme = scheme.lower()
        if scheme == "bearer" and value:
            return value
        if scheme == "apikey" and value:
            if ":" in value:
                return value
            try:
                decoded = base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return value
            return decoded
        return None
    for name in ("x-api-key", "x-auth-token"):
        if headers.get(name):
            return headers[name].strip()
    return None


class VerdictCache:
    """Remembers verified credentials for a short time, so hot paths skip the store."""

    def __init__(self, ttl_seconds: float = 30.0, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, credential: str) -> Principal | None:
        with self._lock:
            hit = self._entries.get(credential)
            if hit is None or hit[0] < time.monotonic():
                return None
            return hit[1]

    def put(self, credential: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[credential] = (time.monotonic() + self._ttl, principal)

    def drop_key(self, key_id: str) -> None:
        with self._lock:
            for cred in [c for c, (_, p) in self._entries.items() if p.key_id == key_id]:
                del self._entries[cred]


class KeyService:
    def __init__(self, repo: Repository, cache: VerdictCache | None = None) -> None:
        self._repo = repo
        self._cache = cache or VerdictCache()

    def cached(self, credential: str) -> Principal | None:
        """A recent verdict for this credential, without touching the store."""
        return self._cache.get(credential)

    def verify(self, credential: str | None, now: datetime) -> Principal:
        if not credential:
            raise Unauthorized("missing API key")
        cached = self._cache.get(credential)
        if cached is not None:
            return cached
        key_id, secret = split_credential(credential)
        rec = self._repo.get_key(key_id)
        if rec is None or not hmac.compare_digest(rec.secret_sha256, hash_secret(secret)):
            raise Unauthorized("invalid API key")
        if rec.revoked_at is not None:
            raise Unauthorized("this API key was revoked")
        if rec.expires_at is not None and rec.expires_at <= now:
            raise Unauthorized("this API key has expired")
        principal = Principal(key_id=rec.key_id, project_id=rec.project_id, roles=frozenset(rec.roles))
        self._cache.put(credential, principal)
        return principal

    def create(self, project_id: str, req: KeyCreate, now: datetime) -> KeyCreated:
        key_id, secret = new_credential()
        rec = ApiKeyRecord(
            key_id=key_id,
            project_id=project_id,
            secret_sha256=hash_secret(secret),
            roles=req.roles,
            name=req.name,
            created_at=now,
            expires_at=now + timedelta(seconds=req.expires_in_seconds) if req.expires_in_seconds else None,
        )
        self._repo.store.write(self._repo.key_write(rec, new=True))
        return KeyCreated(key=_view(rec), api_key=f"{key_id}:{secret}")

    def list_keys(self, project_id: str) -> list[KeyView]:
        return [_view(k) for k in self._repo.list_keys(project_id)]

    def revoke(self, project_id: str, key_id: str, now: datetime) -> KeyView:
        rec = self._repo.get_key(key_id)
        if rec is None or rec.project_id != project_id:
            raise NotFound("api key", key_id)
        rec = rec.model_copy(update={"revoked_at": rec.revoked_at or now})
        self._repo.store.write(self._repo.key_write(rec, new=False))
        self._cache.drop_key(key_id)
        return _view(rec)

    def bootstrap(self, now: datetime, preset: str | None) -> str | None:
        """Create project `default` and, on first start (or when preset), its admin key.

        Returns the credential when one was created (to print once), else None.
        """
        if self._repo.get_project(DEFAULT_PROJECT) is None:
            with contextlib.suppress(ConditionFailed):  # created meanwhile
                self._repo.store.write(
                    self._repo.project_write(ProjectRecord(project_id=DEFAULT_PROJECT, created_at=now))
                )
        if preset:
            key_id, secret = split_credential(preset)
            if not key_id.replace("_", "").replace("-", "").isalnum():
                raise InvalidRequest("MODELFLEET_BOOTSTRAP_API_KEY id must be alphanumeric")
            existing = self._repo.get_key(key_id)
            if existing is not None:
                if not hmac.compare_digest(existing.secret_sha256, hash_secret(secret)):
                    raise Conflict(f"key '{key_id}' exists with another secret")
                return None
            self._store(key_id, secret, DEFAULT_PROJECT, Role.ADMIN, "bootstrap admin", now, new=True)
            return preset
        if self._repo.any_key():
            return None
        key_id, secret = new_credential()
        self._store(key_id, secret, DEFAULT_PROJECT, Role.ADMIN, "bootstrap admin", now, new=True)
        return f"{key_id}:{secret}"

    def ensure_node_key(self, credential: str, now: datetime) -> None:
        """The key local worker processes use (role `node`, system project)."""
        key_id, secret = split_credential(credential)
        existing = self._repo.get_key(key_id)
        if existing is not None and hmac.compare_digest(existing.secret_sha256, hash_secret(secret)):
            return
        self._store(
            key_id, secret, SYSTEM_PROJECT, Role.NODE, "local worker nodes", now, new=existing is None
        )

    def _store(
        self, key_id: str, secret: str, project_id: str, role: Role, name: str, now: datetime, new: bool
    ) -> None:
        rec = ApiKeyRecord(
            key_id=key_id,
            project_id=project_id,
            secret_sha256=hash_secret(secret),
            roles=[role],
            name=name,
            created_at=now,
        )
        self._repo.store.write(self._repo.key_write(rec, new=new))


SYSTEM_PROJECT = "_system"


def _view(rec: ApiKeyRecord) -> KeyView:
    return KeyView(
        key_id=rec.key_id,
        name=rec.name,
        roles=rec.roles,
        created_at=rec.created_at,
        expires_at=rec.expires_at,
        revoked_at=rec.revoked_at,
    )
