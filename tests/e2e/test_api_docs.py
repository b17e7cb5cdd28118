"""The native API's OpenAPI document is generated from the schemas and served without a key."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.platform import RunningPlatform

pytestmark = pytest.mark.e2e


def test_openapi_describes_the_native_api(platform: RunningPlatform) -> None:
    r = httpx.get(f"{platform.url}/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path, method in [
        ("/api/v1/models", "post"),
        ("/api/v1/models/{model_id}/commit", "post"),
        ("/api/v1/deployments", "post"),
        ("/api/v1/deployments/{deployment_id}", "get"),
        ("/api/v1/deployments/{deployment_id}/stop", "post"),
        ("/api/v1/nodes/{node_id}/sync", "put"),
    ]:
        assert method in paths[path], (path, method)
    schemas = doc["components"]["schemas"]
    create = schemas["DeploymentCreate"]
    assert create.get("additionalProperties") is False
    assert {"deployment_id", "allocations", "threads_per_allocation"} <= set(create["properties"])
