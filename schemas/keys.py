"""API keys and the principal a verified credential becomes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.common import Record, RequestModel


class Role(StrEnum):
    ADMIN = "admin"  # everything in its project, keys included
    MANAGE = "manage"  # deployments and models
    INFER = "infer"  # inference only
    NODE = "node"  # a node's own registration, heartbeat and desired state


class KeyState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


class ApiKeyRecord(Record):
    key_id: str
    project_id: str
    secret_sha256: str
    roles: list[Role]
    name: str = ""
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def state(self, now: datetime) -> KeyState:
        if self.revoked_at is not None:
            return KeyState.REVOKED
        if self.expires_at is not None and self.expires_at <= now:
            return KeyState.EXPIRED
        return KeyState.ACTIVE


class Principal(BaseModel):
    """Who is calling: the authorizer's verdict, passed to handlers in the request context."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    project_id: str
    roles: frozenset[Role]
    # Carried with the verdict so that whoever caches it (the gateway, API Gateway's authorizer
    # cache) can still refuse the key the moment it expires.
    expires_at: datetime | None = None

    def has(self, *roles: Role) -> bool:
        return Role.ADMIN in self.roles or any(r in self.roles for r in roles)

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


MAX_KEY_LIFETIME_SECONDS = 10 * 365 * 86_400


class KeyCreate(RequestModel):
    """A new key of the caller's project. It never expires unless given `expires_in_seconds`
    or `expires_at` (one of them; an `expires_at` must be in the future)."""

    name: str = Field(default="", max_length=128)
    roles: list[Role] = Field(min_length=1, max_length=4)
    expires_in_seconds: int | None = Field(default=None, ge=1, le=MAX_KEY_LIFETIME_SECONDS)
    expires_at: AwareDatetime | None = Field(
        default=None, description="ISO 8601 with an offset, e.g. 2030-01-31T12:00:00Z."
    )

    @model_validator(mode="after")
    def _one_expiry(self) -> KeyCreate:
        if self.expires_in_seconds is not None and self.expires_at is not None:
            raise ValueError("give at most one of expires_in_seconds and expires_at")
        return self


class KeyView(Record):
    key_id: str
    name: str
    roles: list[Role]
    state: KeyState
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyList(Record):
    keys: list[KeyView]


class KeyCreated(Record):
    key: KeyView
    api_key: str = Field(description="id:secret. Shown once; only its hash is stored.")
