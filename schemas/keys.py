"""API keys and the principal a verified credential becomes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from schemas.common import Record, RequestModel


class Role(StrEnum):
    ADMIN = "admin"  # everything in its project, keys included
    MANAGE = "manage"  # deployments and models
    INFER = "infer"  # inference only
    NODE = "node"  # a node's own registration, heartbeat and desired state


class ApiKeyRecord(Record):
    key_id: str
    project_id: str
    secret_sha256: str
    roles: list[Role]
    name: str = ""
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None


class Principal(BaseModel):
    """Who is calling: the authorizer's verdict, passed to handlers in the request context."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    project_id: str
    roles: frozenset[Role]

    def has(self, *roles: Role) -> bool:
        return Role.ADMIN in self.roles or any(r in self.roles for r in roles)


class KeyCreate(RequestModel):
    name: str = Field(default="", max_length=128)
    roles: list[Role] = Field(min_length=1, max_length=4)
    expires_in_seconds: int | None = Field(default=None, ge=60, le=10 * 365 * 86_400)


class KeyView(Record):
    key_id: str
    name: str
    roles: list[Role]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyList(Record):
    keys: list[KeyView]


class KeyCreated(Record):
    key: KeyView
    api_key: str = Field(description="id:secret. Shown once; only its hash is stored.")
