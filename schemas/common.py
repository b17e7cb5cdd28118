"""Shared building blocks of the schemas: strict request bases, id patterns."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# Ids users choose (deployment ids, model ids): lowercase, digits, '-', '_', '.'; start and end alphanumeric.
USER_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9_.-]{0,62}[a-z0-9])?$"
UserId = Annotated[str, Field(pattern=USER_ID_PATTERN, min_length=1, max_length=64)]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are refused, so typos cannot hide."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Record(BaseModel):
    """Base of persisted records: tolerant of fields added by newer versions."""

    model_config = ConfigDict(extra="ignore")
