"""Register the digits model as ONNX and as TorchScript, deploy both, and check every prediction
over the whole dataset against the model run directly."""

from __future__ import annotations

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from modelfleet.client import Client
from tests.e2e.conftest import DigitsModels
from tests.e2e.platform import RunningPlatform, wait_for
from tests.models import reference_argmax, torchscript_signature

pytestmark = pytest.mark.e2e


def _predict_all(client: Client, deployment: str, x: np.ndarray, batch: int = 300) -> np.ndarray:
    logits = [
        client.infer(deployment, {"input": x[i : i + batch]})["logits"] for i in range(0, len(x), batch)
    ]
    return np.concatenate(logits)


def test_onnx_deployment_matches_the_model_on_the_whole_dataset(
    platform: RunningPlatform, digits: DigitsModels, cleanup: list[str]
) -> None:
    cleanup.append("digits-onnx")
    with platform.client() as c:
        model = c.register_model(digits.onnx_path, name="digits-onnx", format="onnx")
        assert model["state"] == "ready"
        assert model["signature"]["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
        c.deploy("digits-onnx", model_id=model["model_id"], allocations=2)
        c.wait_for_state("digits-onnx", "started")
        served = _predict_all(c, "digits-onnx", digits.x)
    direct = ort.InferenceSession(str(digits.onnx_path)).run(None, {"input": digits.x})[0]
    assert served.shape == (len(digits.x), 10)
    np.testing.assert_allclose(served, direct, rtol=1e-5, atol=1e-5)
    assert (served.argmax(1) == reference_argmax(digits.torch_model, digits.x)).all()


def test_torchscript_deployment_matches_the_model_on_the_whole_dataset(
    platform: RunningPlatform, digits: DigitsModels, cleanup: list[str]
) -> None:
    cleanup.append("digits-ts")
    with platform.client() as c:
        model = c.register_model(
            digits.torchscript_path,
            name="digits-ts",
            format="torchscript",
            signature=torchscript_signature().model_dump(mode="json"),
        )
        c.deploy("digits-ts", model_id=model["model_id"])
        c.wait_for_state("digits-ts", "started", timeout=90)
        served = _predict_all(c, "digits-ts", digits.x)
    assert (served.argmax(1) == reference_argmax(digits.torch_model, digits.x)).all()


def test_tritonclient_http_works_unchanged(
    platform: RunningPlatform, digits: DigitsModels, cleanup: list[str]
) -> None:
    cleanup.append("digits-triton")
    with platform.client() as c:
        model = c.register_model(digits.onnx_path, name="digits-triton", format="onnx")
        c.deploy("digits-triton", model_id=model["model_id"])
        c.wait_for_state("digits-triton", "started")
    headers = {"Authorization": f"Bearer {platform.admin_key}"}
    client = triton.InferenceServerClient(url=platform.url.removeprefix("http://"))
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("digits-triton", headers=headers)
        meta = client.get_model_metadata("digits-triton", headers=headers)
        assert meta["inputs"][0]["name"] == "input" and meta["platform"] == "onnxruntime_onnx"
        x = digits.x[:64]
        for binary in (True, False):
            inp = triton.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            out = triton.InferRequestedOutput("logits", binary_data=binary)
            # tritonclient adds Inference-Header-Content-Length to the dict it is given: pass a copy.
            result = client.infer("digits-triton", [inp], outputs=[out], headers=dict(headers))
            logits = result.as_numpy("logits")
            assert logits is not None and logits.shape == (64, 10)
            assert (logits.argmax(1) == reference_argmax(digits.torch_model, x)).all()
        with pytest.raises(InferenceServerException, match="expected FP32\\[-1,64\\]"):
            bad = triton.InferInput("input", [1, 63], "FP32")
            bad.set_data_from_numpy(x[:1, :63].copy())
            client.infer("digits-triton", [bad], headers=dict(headers))
        assert not client.is_model_ready("no-such-deployment", headers=headers)
    finally:
        client.close()


def test_weighted_versions_split_traffic_exactly(
    platform: RunningPlatform, digits: DigitsModels, cleanup: list[str]
) -> None:
    cleanup.append("digits-ab")
    with platform.client() as c:
        a = c.register_model(digits.onnx_path, name="digits-a", version="a", format="onnx")
        b = c.register_model(digits.onnx_path, name="digits-b", version="b", format="onnx")
        c.deploy(
            "digits-ab",
            versions=[{"model_id": a["model_id"], "weight": 70}, {"model_id": b["model_id"], "weight": 30}],
        )
        c.wait_for_state("digits-ab", "started")
    headers = {"authorization": f"Bearer {platform.admin_key}"}
    with httpx.Client(base_url=platform.url, headers=headers) as http:
        # The split is exact over ready versions: wait until the gateway routes to both.
        for v in ("a", "b"):
            try:
                wait_for(
                    f"version {v} to be ready",
                    lambda v=v: http.get(f"/v2/models/digits-ab/versions/{v}/ready").status_code == 200,
                )
            except TimeoutError as e:
                raise AssertionError(f"{e}: {http.get('/api/v1/deployments/digits-ab').text}") from None
        counts = {"a": 0, "b": 0}
        body = {
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 64], "data": digits.x[0].tolist()}]
        }
        for _ in range(200):
            r = http.post("/v2/models/digits-ab/infer", json=body)
            assert r.status_code == 200, r.text
            counts[r.json()["model_version"]] += 1
    assert abs(counts["a"] - 140) <= 2 and abs(counts["b"] - 60) <= 2, counts
