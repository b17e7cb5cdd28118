"""API keys: roles limit what a key may do, and a revoked key stops working at once."""

from __future__ import annotations

import pytest

from modelfleet.client import ApiError
from tests.e2e.conftest import DigitsModels
from tests.e2e.platform import RunningPlatform

pytestmark = pytest.mark.e2e


def test_roles_and_revocation(platform: RunningPlatform, digits: DigitsModels, cleanup: list[str]) -> None:
    cleanup.append("digits-keys")
    with platform.client() as admin:
        model = admin.register_model(digits.onnx_path, name="digits-keys", format="onnx")
        admin.deploy("digits-keys", model_id=model["model_id"])
        admin.wait_for_state("digits-keys", "started")
        created = admin.request("POST", "/api/v1/keys", json={"name": "app", "roles": ["infer"]})
        key_id, credential = created["key"]["key_id"], created["api_key"]
        assert credential.startswith(key_id + ":")
        listed = admin.request("GET", "/api/v1/keys")["keys"]
        assert any(k["key_id"] == key_id for k in listed)
        assert all("secret_sha256" not in k for k in listed)  # only the id and metadata are shown

        with platform.client(credential) as app:
            assert app.infer("digits-keys", {"input": digits.x[:2]})["logits"].shape == (2, 10)
            with pytest.raises(ApiError) as denied:
                app.deploy("digits-keys-2", model_id=model["model_id"])
            assert denied.value.status == 403 and denied.value.code == "missing_role"
            with pytest.raises(ApiError) as no_keys:
                app.request("GET", "/api/v1/keys")
            assert no_keys.value.status == 403

            admin.request("DELETE", f"/api/v1/keys/{key_id}")
            with pytest.raises(ApiError) as revoked:
                app.infer("digits-keys", {"input": digits.x[:2]})
            assert revoked.value.status == 401
            with pytest.raises(ApiError) as revoked_api:
                app.get_deployment("digits-keys")
            assert revoked_api.value.status == 401 and "revoked" in revoked_api.value.message
