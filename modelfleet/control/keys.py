"""API keys: creation, verification, expiry, revocation, and the keys the bootstrap makes.

A key is written `id:secret`. The id is public and prefixed (`mfk_...`); only the secret's
SHA-256 is stored. Every face's header is parsed into that one credential string here. A key
belongs to one project and has roles there; an admin key of project `_system` is the platform
admin (it creates and deletes projects).
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
from schemas.keys import ApiKeyRecord, KeyCreate, KeyCreated, KeyState, KeyView, Principal, Role
from schemas.projects import DEFAULT_PROJECT, SYSTEM_PROJECT, ProjectRecord

__all__ = ["SYSTEM_PROJECT", "KeyService", "VerdictCache", "credential_from_headers"]

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
    """Remembers verified credentials for a short time, so hot paths skip the store.

    An entry never outlives its key: besides its own time to live, a hit whose key has expired
    by `now` is dropped and missed, so the caller goes to the store and gets the refusal.
    """

    def __init__(self, ttl_seconds: float = 30.0, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, credential: str, now: datetime) -> Principal | None:
        with self._lock:
            hit = self._entries.get(credential)
            if hit is None:
                return None
            if hit[0] < time.monotonic() or hit[1].expired(now):
                del self._entries[credential]
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

    def cached(self, credential: str, now: datetime) -> Principal | None:
        """A recent verdict for this credential, without touching the store (None once expired)."""
        return self._cache.get(credential, now)

    def verify(self, credential: str | None, now: datetime) -> Principal:
        if not credential:
            raise Unauthorized("missing API key")
        cached = self._cache.get(credential, now)
        if cached is not None:
            return cached
        key_id, secret = split_credential(credential)
        rec = self._repo.get_key(key_id)
        if rec is None or not hmac.compare_digest(rec.secret_sha256, hash_secret(secret)):
            raise Unauthorized("invalid API key")
        state = rec.state(now)
        if state == KeyState.REVOKED:
            raise Unauthorized("this API key was revoked")
        if state == KeyState.EXPIRED:
            raise Unauthorized("this API key has expired")
        principal = Principal(
            key_id=rec.key_id,
            project_id=rec.project_id,
            roles=frozenset(rec.roles),
            expires_at=rec.expires_at,
        )
        self._cache.put(credential, principal)
        return principal

    def new_key(self, project_id: str, req: KeyCreate, now: datetime) -> tuple[ApiKeyRecord, str]:
        """A key record (not yet written) and its credential, for `create` or a project's first key."""
        expires_at = req.expires_at
        if req.expires_in_seconds is not None:
            expires_at = now + timedelta(seconds=req.expires_in_seconds)
        elif expires_at is not None and expires_at <= now:
            raise InvalidRequest("expires_at must be in the future", code="validation_failed")
        key_id, secret = new_credential()
        rec = ApiKeyRecord(
            key_id=key_id,
            project_id=project_id,
            secret_sha256=hash_secret(secret),
            roles=req.roles,
            name=req.name,
            created_at=now,
            expires_at=expires_at,
        )
        return rec, f"{key_id}:{secret}"

    def create(self, project_id: str, req: KeyCreate, now: datetime) -> KeyCreated:
        rec, credential = self.new_key(project_id, req, now)
        self._repo.store.write(self._repo.key_write(rec, new=True))
        return KeyCreated(key=key_view(rec, now), api_key=credential)

    def list_keys(self, project_id: str, now: datetime) -> list[KeyView]:
        return [key_view(k, now) for k in self._repo.list_keys(project_id)]

    def revoke(self, project_id: str, key_id: str, now: datetime) -> KeyView:
        rec = self._repo.get_key(key_id)
        if rec is None or rec.project_id != project_id:
            raise NotFound("api key", key_id)
        rec = rec.model_copy(update={"revoked_at": rec.revoked_at or now})
        self._repo.store.write(self._repo.key_write(rec, new=False))
        self._cache.drop_key(key_id)
        return key_view(rec, now)

    def revoke_project_keys(self, project_id: str, now: datetime) -> int:
        """Revoke every key of a project (it is being deleted); returns how many were active."""
        active = [k for k in self._repo.list_keys(project_id) if k.revoked_at is None]
        for k in active:
            self.revoke(project_id, k.key_id, now)
        return len(active)

    # --- bootstrap ----------------------------------------------------------------------------
    def ensure_project(self, project_id: str, now: datetime) -> None:
        if self._repo.get_project(project_id) is None:
            with contextlib.suppress(ConditionFailed):  # created meanwhile
                self._repo.store.write(
                    self._repo.project_write(ProjectRecord(project_id=project_id, created_at=now))
                )

    def bootstrap(self, now: datetime, preset: str | None) -> str | None:
        """Create projects `default` and `_system` and, on first start (or when preset), the
        admin key of `default`.

        Returns the credential when one was created (to print once), else None.
        """
        self.ensure_project(DEFAULT_PROJECT, now)
        self.ensure_project(SYSTEM_PROJECT, now)
        if preset:
            return self._preset(preset, DEFAULT_PROJECT, Role.ADMIN, "bootstrap admin", now)
        if self._repo.any_key():  # not the first start (this runs before any other key is made)
            return None
        return self._mint(DEFAULT_PROJECT, Role.ADMIN, "bootstrap admin", now)

    def bootstrap_platform_admin(self, now: datetime, preset: str | None) -> str | None:
        """The platform admin key (admin of `_system`): made when preset, or when `_system` has
        no active admin key yet (so platforms from before projects existed get one too).

        Returns the credential when one was created (to print once), else None.
        """
        self.ensure_project(SYSTEM_PROJECT, now)
        if preset:
            return self._preset(preset, SYSTEM_PROJECT, Role.ADMIN, "platform admin", now)
        if self._keys_with_role(SYSTEM_PROJECT, Role.ADMIN, now):
            return None
        return self._mint(SYSTEM_PROJECT, Role.ADMIN, "platform admin", now)

    def ensure_node_key(self, credential: str, now: datetime) -> None:
        """The key local worker processes use (role `node`, system project)."""
        key_id, secret = split_credential(credential)
        existing = self._repo.get_key(key_id)
        if existing is not None and hmac.compare_digest(existing.secret_sha256, hash_secret(secret)):
            return
        self._store(
            key_id, secret, SYSTEM_PROJECT, Role.NODE, "local worker nodes", now, new=existing is None
        )

    def _keys_with_role(self, project_id: str, role: Role, now: datetime) -> list[ApiKeyRecord]:
        return [
            k for k in self._repo.list_keys(project_id) if role in k.roles and k.state(now) == KeyState.ACTIVE
        ]

    def _preset(self, preset: str, project_id: str, role: Role, name: str, now: datetime) -> str | None:
        key_id, secret = split_credential(preset)
        if not key_id.replace("_", "").replace("-", "").isalnum():
            raise InvalidRequest("a preset API key id must be alphanumeric ('_' and '-' allowed)")
        existing = self._repo.get_key(key_id)
        if existing is not None:
            if not hmac.compare_digest(existing.secret_sha256, hash_secret(secret)):
                raise Conflict(f"key '{key_id}' exists with another secret")
            if existing.project_id != project_id:
                raise Conflict(f"key '{key_id}' exists in project '{existing.project_id}'")
            return None
        self._store(key_id, secret, project_id, role, name, now, new=True)
        return preset

    def _mint(self, project_id: str, role: Role, name: str, now: datetime) -> str:
        key_id, secret = new_credential()
        self._store(key_id, secret, project_id, role, name, now, new=True)
        return f"{key_id}:{secret}"

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


def key_view(rec: ApiKeyRecord, now: datetime) -> KeyView:
    return KeyView(
        key_id=rec.key_id,
        name=rec.name,
        roles=rec.roles,
        state=rec.state(now),
        created_at=rec.created_at,
        expires_at=rec.expires_at,
        revoked_at=rec.revoked_at,
    )
