"""Projects: the platform admin (an admin key of `_system`) creates them, each with a first admin
key shown once; a project's keys see only their project; a project is deleted only when empty,
and its keys stop working."""

from __future__ import annotations

import secrets
import uuid

import pytest

from modelfleet.client import ApiError
from tests.e2e.conftest import DigitsModels
from tests.e2e.platform import PLATFORM_KEY, RunningPlatform

pytestmark = pytest.mark.e2e


def _refused(call: object, status: int, code: str | None = None) -> None:
    assert callable(call)
    with pytest.raises(ApiError) as e:
        call()
    assert e.value.status == status, e.value
    if code:
        assert e.value.code == code, e.value


def test_project_lifecycle(platform: RunningPlatform, digits: DigitsModels) -> None:
    name = f"team-{secrets.token_hex(3)}"
    with platform.client(PLATFORM_KEY) as root, platform.client() as default_admin:
        # The bootstrap admin of `default` administers its project, not the platform.
        _refused(lambda: default_admin.request("POST", "/api/v1/projects", json={"project_id": name}), 403)
        assert [p["project_id"] for p in default_admin.request("GET", "/api/v1/projects")["projects"]] == [
            "default"
        ]

        created = root.request("POST", "/api/v1/projects", json={"project_id": name, "description": "a team"})
        assert created["project"]["project_id"] == name
        first_key = created["admin_key"]["api_key"]
        assert created["admin_key"]["key"]["roles"] == ["admin"]
        assert first_key.startswith(created["admin_key"]["key"]["key_id"] + ":")
        _refused(lambda: root.request("POST", "/api/v1/projects", json={"project_id": name}), 409)
        listed = {p["project_id"] for p in root.request("GET", "/api/v1/projects")["projects"]}
        assert {"default", "_system", name} <= listed

        with platform.client(first_key) as team:
            assert team.request("GET", f"/api/v1/projects/{name}")["description"] == "a team"
            _refused(lambda: team.request("GET", "/api/v1/projects/default"), 404)
            model = team.register_model(digits.onnx_path, name="team-model", format="onnx")
            # Another project's key does not see it.
            _refused(lambda: default_admin.get_model(model["model_id"]), 404)
            assert [k["state"] for k in team.request("GET", "/api/v1/keys")["keys"]] == ["active"]

            _refused(lambda: root.request("DELETE", f"/api/v1/projects/{name}"), 409, "project_not_empty")
            team.request("GET", "/api/v1/models")  # refusing the delete left the keys working
            team.request("DELETE", f"/api/v1/models/{model['model_id']}")
            _refused(
                lambda: team.request("DELETE", f"/api/v1/projects/{name}"), 403, "platform_admin_required"
            )
            root.request("DELETE", f"/api/v1/projects/{name}")
            _refused(lambda: team.request("GET", "/api/v1/models"), 401)  # its keys were revoked
        _refused(lambda: root.request("GET", f"/api/v1/projects/{name}"), 404)
        for reserved in ("default", "_system"):
            _refused(
                lambda r=reserved: root.request("DELETE", f"/api/v1/projects/{r}"), 409, "project_reserved"
            )


def test_idempotent_project_create_replays_its_admin_key(platform: RunningPlatform) -> None:
    name = f"idem-{uuid.uuid4().hex[:8]}"
    with platform.client(PLATFORM_KEY) as root:
        headers = {"idempotency-key": str(uuid.uuid4())}
        first = root.request("POST", "/api/v1/projects", json={"project_id": name}, headers=headers)
        again = root.request("POST", "/api/v1/projects", json={"project_id": name}, headers=headers)
        assert again == first  # the stored answer, admin key included, not a 409 duplicate
        with platform.client(first["admin_key"]["api_key"]) as team:
            assert team.request("GET", f"/api/v1/projects/{name}")["project_id"] == name
        root.request("DELETE", f"/api/v1/projects/{name}")
