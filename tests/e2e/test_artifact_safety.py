"""Fault-suite rows 6 and 7 end to end: malicious TorchScript uploads through the native API.

Each malicious model commits (its digest is honest) and deploys, but every node refuses it before
torch reads it: the deployment ends ``failed`` with a reason naming the refusal, the payload's
canary file never appears, and the node keeps serving the healthy deployment.

Row 6 (an upload whose bytes do not match its declared sha256 is refused at commit) is
``tests/e2e/test_bad_input.py::test_a_wrong_digest_is_refused_and_the_model_stays_uncommitted``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from faults import corpus
from tests.e2e.conftest import DigitsModels
from tests.e2e.platform import RunningPlatform
from tests.models import torchscript_signature

pytestmark = pytest.mark.e2e


def test_malicious_torchscript_fails_its_deployment_and_runs_nothing(
    platform: RunningPlatform, digits: DigitsModels, tmp_path: Path, cleanup: list[str]
) -> None:
    canary = tmp_path / "canary"
    uploads = {
        # Python pickle with __reduce__ -> os.system("touch canary"), in a TorchScript-shaped zip.
        "evil-reduce": (
            corpus.write_torchscript_shaped(tmp_path / "reduce.pt", corpus.reduce_pickle(canary, shell=True)),
            "outside TorchScript's allowed globals",
        ),
        # Genuine TorchScript whose __setstate__ calls torch.from_file(canary): torch.jit.load runs it.
        "evil-from-file": (
            corpus.write_from_file_torchscript(tmp_path / "from_file.pt", canary),
            "'from_file' reaches the filesystem",
        ),
        "evil-raw-pickle": (corpus.write_raw_pickle(tmp_path / "raw.pt", canary), "is a raw pickle"),
    }
    canary.unlink(missing_ok=True)
    cleanup += ["safe-alive", *uploads]
    signature = torchscript_signature().model_dump(mode="json")
    with platform.client() as c:
        alive = c.register_model(digits.onnx_path, name="safe-alive", format="onnx")
        c.deploy("safe-alive", model_id=alive["model_id"], allocations=2)
        c.wait_for_state("safe-alive", "started")
        for name, (path, _) in uploads.items():
            model = c.register_model(path, name=name, format="torchscript", signature=signature)
            assert model["state"] == "ready", model
            c.deploy(name, model_id=model["model_id"])
        for name, (_, message) in uploads.items():
            failed = c.wait_for_state(name, "failed", timeout=60)
            assert message in failed["reason"], failed
            routes = [r for rs in failed["routing_table"].values() for r in rs]
            assert routes and all(r["routing_state"] == "failed" and message in r["reason"] for r in routes)
        assert not canary.exists(), "a malicious model ran code on a node"
        # Every node is still up and still serving the healthy deployment.
        nodes = c.request("GET", "/api/v1/nodes")["nodes"]
        assert nodes and all(n["state"] == "ready" for n in nodes), nodes
        out = c.infer("safe-alive", {"input": digits.x[:4]})["logits"]
        assert out.shape == (4, 10)
    assert not canary.exists()
