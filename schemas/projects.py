"""Projects: the tenancy boundary. Every model, deployment and key belongs to one.

Two projects are made by the bootstrap: `default` (the first user project) and `_system`, the
platform's own. An admin key of `_system` is the *platform admin*: it creates and deletes
projects. Users cannot name a project `_system` (project ids start with a letter or digit).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from schemas.common import Record, RequestModel, UserId
from schemas.keys import KeyCreated

DEFAULT_PROJECT = "default"
SYSTEM_PROJECT = "_system"
RESERVED_PROJECTS = frozenset({DEFAULT_PROJECT, SYSTEM_PROJECT})  # made by the bootstrap; never deleted


class ProjectRecord(Record):
    project_id: str
    created_at: datetime
    description: str = ""
    max_instances_per_version: int = 5


class ProjectCreate(RequestModel):
    """Create a project; the answer carries its first admin key (shown once)."""

    project_id: UserId
    description: str = Field(default="", max_length=1024)
    admin_key_name: str = Field(default="project admin", max_length=128)


class ProjectView(Record):
    project_id: str
    description: str
    created_at: datetime


class ProjectList(Record):
    projects: list[ProjectView]


class ProjectCreated(Record):
    project: ProjectView
    admin_key: KeyCreated


def project_view(rec: ProjectRecord) -> ProjectView:
    return ProjectView(project_id=rec.project_id, description=rec.description, created_at=rec.created_at)
