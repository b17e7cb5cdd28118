"""API keys: roles limit what a key may do; a revoked key stops working at once, an expiring
one when it expires."""

from __future__ import annotations

import base64

import httpx
import pytest

from modelfleet.client import ApiError
from tests.e2e.conftest import DigitsModels
from tests.e2e.platform import RunningPlatform, wait_for

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


def test_an_expiring_key_is_refused_on_every_face_once_it_expires(platform: RunningPlatform) -> None:
    """The key works until `expires_at`, then every face answers 401, even though each had just
    cached its verdict (the cache keeps verdicts 30 s; expiry ends them sooner)."""
    with platform.client() as admin:
        for bad in (
            {"expires_at": "2001-01-01T00:00:00Z"},
            {"expires_in_seconds": 5, "expires_at": "2099-01-01T00:00:00Z"},
        ):
            with pytest.raises(ApiError) as refused:
                admin.request("POST", "/api/v1/keys", json={"roles": ["infer"], **bad})
            assert refused.value.status == 400
        created = admin.request(
            "POST", "/api/v1/keys", json={"name": "short", "roles": ["infer"], "expires_in_seconds": 3}
        )
        key_id, credential = created["key"]["key_id"], created["api_key"]
        assert created["key"]["expires_at"] is not None and created["key"]["state"] == "active"
        listed = {k["key_id"]: k for k in admin.request("GET", "/api/v1/keys")["keys"]}
        assert listed[key_id]["expires_at"] == created["key"]["expires_at"]

        es_auth = "ApiKey " + base64.b64encode(credential.encode()).decode()
        faces = [
            ("GET", "/api/v1/deployments", {"authorization": f"Bearer {credential}"}),
            ("GET", "/_ml/trained_models", {"authorization": es_auth}),
            ("GET", "/v2/models/no-such-deployment", {"x-auth-token": credential}),
            ("POST", "/v2/models/no-such-deployment/infer", {"authorization": f"Bearer {credential}"}),
        ]
        with httpx.Client(base_url=platform.url, timeout=30) as http:
            before = [
                http.request(m, p, headers=h, json={} if m == "POST" else None).status_code
                for m, p, h in faces
            ]
            assert before == [200, 200, 404, 404]  # authenticated (and now cached) everywhere
            wait_for(
                "the key to expire",
                lambda: http.get("/api/v1/deployments", headers=faces[0][2]).status_code == 401,
                timeout=20,  # well inside the verdict cache's 30 s
            )
            for method, path, headers in faces:
                r = http.request(method, path, headers=headers, json={} if method == "POST" else None)
                assert r.status_code == 401, (path, r.text)
                assert "expired" in r.text, (path, r.text)
        listed = {k["key_id"]: k for k in admin.request("GET", "/api/v1/keys")["keys"]}
        assert listed[key_id]["state"] == "expired"
