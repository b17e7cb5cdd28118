"""A ``torch.export`` program deployed through the native API, end to end.

The digits MLP is exported with ``torch.export.save``, registered as ``torch_export`` without a
signature (commit vets the archive and reads the signature from its JSON program), deployed,
and every prediction over the dataset is checked against the model run directly. A malicious
archive is refused at commit when its signature must be read from it, and fails its deployment
on the nodes when a signature is given, without running its payload.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from faults import corpus
from modelfleet.client import ApiError
from tests.e2e.conftest import DigitsModels
from tests.e2e.platform import RunningPlatform
from tests.models import reference_argmax

pytestmark = pytest.mark.e2e


def _export(digits: DigitsModels, path: Path) -> Path:
    batch = torch.export.Dim("batch", min=1, max=4096)
    example = (torch.from_numpy(digits.x[:2]),)
    torch.export.save(
        torch.export.export(digits.torch_model.eval(), example, dynamic_shapes=({0: batch},)), str(path)
    )
    return path


def test_a_torch_export_program_deploys_and_matches_the_model(
    platform: RunningPlatform, digits: DigitsModels, tmp_path: Path, cleanup: list[str]
) -> None:
    cleanup.append("digits-pt2")
    with platform.client() as c:
        model = c.register_model(
            _export(digits, tmp_path / "digits.pt2"), name="digits-pt2", format="torch_export"
        )
        assert model["state"] == "ready", model
        assert model["format"] == "torch_export"
        assert model["signature"]["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
        (output,) = model["signature"]["outputs"]
        assert output["datatype"] == "FP32" and output["shape"] == [-1, 10]
        c.deploy("digits-pt2", model_id=model["model_id"], allocations=2)
        c.wait_for_state("digits-pt2", "started")
        served = np.concatenate(
            [
                c.infer("digits-pt2", {"input": digits.x[i : i + 300]})[output["name"]]
                for i in range(0, len(digits.x), 300)
            ]
        )
    with torch.inference_mode():
        direct = digits.torch_model(torch.from_numpy(digits.x)).numpy()
    np.testing.assert_allclose(served, direct, rtol=1e-4, atol=1e-5)
    assert (served.argmax(axis=1) == reference_argmax(digits.torch_model, digits.x)).all()


def test_a_malicious_torch_export_archive_runs_nothing(
    platform: RunningPlatform, tmp_path: Path, cleanup: list[str]
) -> None:
    canary = tmp_path / "canary"
    evil = corpus.write_torch_export_evil_sample_inputs(tmp_path / "evil.pt2", canary)
    cleanup.append("evil-pt2")
    signature = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 4]}],
    }
    with platform.client() as c:
        with pytest.raises(ApiError) as refused:
            c.register_model(evil, name="evil-pt2-unsigned", format="torch_export")
        assert refused.value.code == "invalid_model_file" and "outside TorchScript's allowed globals" in str(
            refused.value
        )
        model = c.register_model(evil, name="evil-pt2", format="torch_export", signature=signature)
        c.deploy("evil-pt2", model_id=model["model_id"])
        failed = c.wait_for_state("evil-pt2", "failed", "started", timeout=60)
        assert failed["state"] == "failed" and "outside TorchScript's allowed globals" in failed["reason"], (
            failed
        )
        nodes = c.request("GET", "/api/v1/nodes")["nodes"]
        assert nodes and all(n["state"] == "ready" for n in nodes), nodes
    assert not canary.exists(), "a malicious torch.export archive ran code"
