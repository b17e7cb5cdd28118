"""Every bad input gets a clear JSON 4xx and changes no state."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.e2e.conftest import DigitsModels
from tests.e2e.platform import RunningPlatform

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(platform: RunningPlatform, digits: DigitsModels) -> Iterator[str]:
    with platform.client() as c:
        model = c.register_model(digits.onnx_path, name="digits-bad", format="onnx")
        c.deploy("digits-bad", model_id=model["model_id"])
        c.wait_for_state("digits-bad", "started")
        yield model["model_id"]
        c.delete("digits-bad", force=True)


@pytest.fixture
def http(platform: RunningPlatform) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=platform.url, headers={"authorization": f"Bearer {platform.admin_key}"}) as h:
        yield h


def _state(http: httpx.Client) -> tuple[list[str], list[str]]:
    deployments = sorted(d["deployment_id"] for d in http.get("/api/v1/deployments").json()["deployments"])
    models = sorted(m["model_id"] for m in http.get("/api/v1/models").json()["models"])
    return deployments, models


def _error(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == code, err
    assert err["message"]
    return dict(err)


def test_control_api_refuses_bad_requests_and_changes_nothing(http: httpx.Client, served: str) -> None:
    before = _state(http)
    _error(
        http.post("/api/v1/deployments", content=b"{not json", headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )
    _error(
        http.post("/api/v1/deployments", content=b"\x9d\xbd{", headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )
    _error(
        http.post(
            "/api/v1/deployments",
            content=b'{"deployment_id": "x0", "model_id": "m"}',
            headers={"content-type": "text/plain"},
        ),
        415,
        "unsupported_media_type",
    )
    err = _error(
        http.post("/api/v1/deployments", json={"deployment_id": "x1", "model_id": served, "alocations": 2}),
        400,
        "validation_failed",
    )
    assert "alocations" in str(err["message"])
    _error(
        http.post(
            "/api/v1/deployments", json={"deployment_id": "x2", "model_id": served, "allocations": "many"}
        ),
        400,
        "validation_failed",
    )
    _error(
        http.post(
            "/api/v1/deployments",
            json={"deployment_id": "x3", "model_id": served, "threads_per_allocation": 3},
        ),
        400,
        "validation_failed",
    )
    _error(
        http.post("/api/v1/deployments", json={"deployment_id": "Bad Id!", "model_id": served}),
        400,
        "validation_failed",
    )
    _error(
        http.post("/api/v1/deployments", json={"deployment_id": "x4", "model_id": "nope"}),
        404,
        "model_not_found",
    )
    _error(
        http.post("/api/v1/deployments", json={"deployment_id": "digits-bad", "model_id": served}),
        409,
        "deployment_exists",
    )
    _error(
        http.post(
            "/api/v1/deployments", json={"deployment_id": "x5", "model_id": served, "state": "started"}
        ),
        400,
        "validation_failed",
    )
    _error(http.get("/api/v1/deployments/nope"), 404, "deployment_not_found")
    _error(http.post("/api/v1/deployments/nope/stop"), 404, "deployment_not_found")
    _error(http.get("/api/v1/models/nope"), 404, "model_not_found")
    _error(http.get("/api/v1/no-such-route"), 404, "route_not_found")
    _error(
        http.post("/api/v1/models", json={"name": "m", "format": "onnx", "files": []}),
        400,
        "validation_failed",
    )
    _error(
        http.post(
            "/api/v1/models",
            json={
                "name": "m",
                "format": "tflite",
                "files": [{"name": "a", "sha256": "0" * 64, "size_bytes": 1}],
            },
        ),
        400,
        "validation_failed",
    )
    _error(
        http.post(
            "/api/v1/models",
            json={
                "name": "m",
                "format": "torchscript",
                "files": [{"name": "a.pt", "sha256": "0" * 64, "size_bytes": 1}],
            },
        ),
        400,
        "validation_failed",
    )
    big = b'{"deployment_id": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    _error(
        http.post("/api/v1/deployments", content=big, headers={"content-type": "application/json"}),
        413,
        "payload_too_large",
    )
    assert _state(http) == before


def test_missing_or_bad_keys_get_401(platform: RunningPlatform, served: str) -> None:
    with httpx.Client(base_url=platform.url) as anon:
        _error(anon.get("/api/v1/deployments"), 401, "unauthorized")
        for header in (
            "Bearer mfk_nope:wrong",
            "Bearer not-a-key",
            "Basic dXNlcjpwdw==",
            f"Bearer {platform.admin_key}x",
        ):
            r = anon.get("/api/v1/deployments", headers={"authorization": header})
            assert r.status_code == 401, (header, r.text)
        r = anon.post("/v2/models/digits-bad/infer", json={"inputs": []})
        assert r.status_code == 401 and r.json()["error"]


def test_inference_refuses_bad_tensors_naming_expected_and_given(http: httpx.Client, served: str) -> None:
    url = "/v2/models/digits-bad/infer"

    def body(
        name: str = "input", datatype: str = "FP32", shape: tuple[int, ...] = (1, 64)
    ) -> dict[str, object]:
        n = int(np.prod(shape))
        return {"inputs": [{"name": name, "datatype": datatype, "shape": list(shape), "data": [0] * n}]}

    r = http.post(url, json=body(shape=(1, 63)))
    assert r.status_code == 400
    assert "expected FP32[-1,64]" in r.json()["error"] and "FP32[1,63]" in r.json()["error"]
    r = http.post(url, json=body(datatype="INT64"))
    assert r.status_code == 400 and "INT64[1,64]" in r.json()["error"]
    r = http.post(url, json=body(name="pixels"))
    assert r.status_code == 400 and "pixels" in r.json()["error"] and "input" in r.json()["error"]
    r = http.post(
        url, json={"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": [1, 2]}]}
    )
    assert r.status_code == 400 and "64" in r.json()["error"]
    r = http.post(url, content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 400
    r = http.post("/v2/models/nope/infer", json=body())
    assert r.status_code == 404 and "nope" in r.json()["error"]
    big = np.zeros((20_000, 64), np.float32)
    r = http.post(
        url,
        json={
            "inputs": [
                {"name": "input", "datatype": "FP32", "shape": [20_000, 64], "data": big.ravel().tolist()}
            ]
        },
    )
    assert r.status_code == 413
    ok = http.post(url, json=body())
    assert ok.status_code == 200, ok.text


def test_a_wrong_digest_is_refused_and_the_model_stays_uncommitted(
    http: httpx.Client, digits: DigitsModels
) -> None:
    data = digits.onnx_path.read_bytes()
    wrong = hashlib.sha256(b"something else").hexdigest()
    created = http.post(
        "/api/v1/models",
        json={
            "name": "tampered",
            "format": "onnx",
            "files": [{"name": "m.onnx", "sha256": wrong, "size_bytes": len(data)}],
        },
    ).json()
    target = created["uploads"][0]
    assert httpx.put(target["url"], content=data).status_code == 200
    model_id = created["model"]["model_id"]
    err = _error(http.post(f"/api/v1/models/{model_id}/commit"), 400, "digest_mismatch")
    assert wrong in str(err["message"])
    assert http.get(f"/api/v1/models/{model_id}").json()["state"] == "uploading"
    _error(
        http.post("/api/v1/deployments", json={"deployment_id": "tampered", "model_id": model_id}),
        409,
        "model_not_ready",
    )
    assert http.delete(f"/api/v1/models/{model_id}").status_code == 204


def test_unknown_routes_and_methods_answer_json(http: httpx.Client) -> None:
    for method, path, status in [
        ("GET", "/nope", 404),
        ("GET", "/v2/models/x/infer", 405),
        ("DELETE", "/v2/health/live", 405),
        ("GET", "/api/v1/nope", 404),
    ]:
        r = http.request(method, path)
        assert r.status_code == status, (method, path, r.text)
        assert r.headers["content-type"].startswith("application/json"), (method, path)
        assert r.json()["error"]
