"""Projects: create (with a first admin key), list, get, delete.

Every record of a project is keyed by its id, and every service takes the caller's project from
the verified key, never from a request. Projects themselves are managed by the *platform admin*,
an admin key of project `_system` (the bootstrap makes one). Any other key sees only its own
project; another project's id answers 404, exactly like an id that does not exist.
"""

from __future__ import annotations

from datetime import datetime

from modelfleet.adapters.dynamo import Write
from modelfleet.adapters.errors import ConditionFailed
from modelfleet.control.errors import Conflict, Forbidden, NotFound
from modelfleet.control.keys import KeyService, key_view
from modelfleet.control.repository import Repository
from schemas.keys import KeyCreate, KeyCreated, Principal, Role
from schemas.projects import (
    RESERVED_PROJECTS,
    SYSTEM_PROJECT,
    ProjectCreate,
    ProjectCreated,
    ProjectRecord,
    ProjectView,
    project_view,
)


def is_platform_admin(who: Principal) -> bool:
    return who.project_id == SYSTEM_PROJECT and Role.ADMIN in who.roles


class ProjectService:
    def __init__(self, repo: Repository, keys: KeyService) -> None:
        self._repo = repo
        self._keys = keys

    @staticmethod
    def _require_platform_admin(who: Principal) -> None:
        if not is_platform_admin(who):
            raise Forbidden(
                "only the platform admin (an admin key of project '_system') manages projects",
                code="platform_admin_required",
            )

    def create(self, who: Principal, req: ProjectCreate, now: datetime) -> ProjectCreated:
        """The project and its first admin key, in one transaction (both or neither)."""
        self._require_platform_admin(who)
        rec = ProjectRecord(project_id=req.project_id, description=req.description, created_at=now)
        key, credential = self._keys.new_key(
            rec.project_id, KeyCreate(name=req.admin_key_name, roles=[Role.ADMIN]), now
        )
        try:
            self._repo.store.transact([self._repo.project_write(rec), self._repo.key_write(key, new=True)])
        except ConditionFailed:
            raise Conflict(
                f"project '{rec.project_id}' already exists", code="project_already_exists"
            ) from None
        return ProjectCreated(
            project=project_view(rec), admin_key=KeyCreated(key=key_view(key, now), api_key=credential)
        )

    def list_projects(self, who: Principal) -> list[ProjectView]:
        if is_platform_admin(who):
            recs = self._repo.store.scan("projects", ProjectRecord)
        else:
            own = self._repo.get_project(who.project_id)
            recs = [own] if own else []
        return [project_view(r) for r in sorted(recs, key=lambda r: r.project_id)]

    def get(self, who: Principal, project_id: str) -> ProjectView:
        if project_id != who.project_id and not is_platform_admin(who):
            raise NotFound("project", project_id)
        rec = self._repo.get_project(project_id)
        if rec is None:
            raise NotFound("project", project_id)
        return project_view(rec)

    def delete(self, who: Principal, project_id: str, now: datetime) -> None:
        """Refused while the project holds models or deployments. Its keys are revoked first and
        emptiness checked again, so nothing can be created in it meanwhile."""
        self._require_platform_admin(who)
        rec = self._repo.get_project(project_id)
        if rec is None:
            raise NotFound("project", project_id)
        if project_id in RESERVED_PROJECTS:
            raise Conflict(
                f"project '{project_id}' is made by the bootstrap and kept", code="project_reserved"
            )
        self._check_empty(project_id)
        self._keys.revoke_project_keys(project_id, now)
        self._check_empty(project_id)
        self._repo.store.write(Write("projects", {"project_id": project_id}, delete=True))

    def _check_empty(self, project_id: str) -> None:
        deployments = self._repo.list_deployments(project_id)
        models = self._repo.list_models(project_id)
        if deployments or models:
            raise Conflict(
                f"project '{project_id}' still has {len(deployments)} deployment(s) and "
                f"{len(models)} model(s); delete them first",
                code="project_not_empty",
            )
