"""Projects: the tenancy boundary. Every model, deployment and key belongs to one."""

from __future__ import annotations

from datetime import datetime

from schemas.common import Record

DEFAULT_PROJECT = "default"


class ProjectRecord(Record):
    project_id: str
    created_at: datetime
    max_instances_per_version: int = 5
