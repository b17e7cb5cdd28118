"""The local gateway over HTTPS: a self-signed CA made by the platform, trusted by the nodes, the
SDK and any client given its CA file; a client that does not trust it is refused, never let through
unverified."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from tests.e2e.conftest import DigitsModels
from tests.e2e.platform import ADMIN_KEY, start_platform

pytestmark = pytest.mark.e2e


def test_self_signed_https_end_to_end(tmp_path: Path, digits: DigitsModels) -> None:
    p = start_platform(tmp_path / "home", {"MODELFLEET_TLS": "self-signed"})
    try:
        assert p.url.startswith("https://")
        assert p.ca_file is not None and Path(p.ca_file).is_file()
        # the nodes registered over HTTPS (start_platform waited for every node to be ready)
        with p.client() as c:
            assert sum(n["state"] == "ready" for n in c.request("GET", "/api/v1/nodes")["nodes"]) == 2
            model = c.register_model(digits.onnx_path, name="digits-tls", format="onnx")
            c.deploy("digits-tls", model_id=model["model_id"])
            c.wait_for_state("digits-tls", "started")
            logits = np.asarray(c.infer("digits-tls", {"input": digits.x[:4]})["logits"])
        assert logits.shape == (4, 10)
        expected = digits.torch_model(torch.from_numpy(digits.x[:4])).detach().numpy()
        np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)

        # a client with the system's CA store refuses the certificate instead of ignoring it
        with pytest.raises(httpx.ConnectError) as refused:
            httpx.get(f"{p.url}/healthz", verify=ssl.create_default_context())
        assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
        # with the CA file it is trusted, and the name it was issued for matches
        ok = httpx.get(
            f"{p.url}/api/v1/deployments",
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
            verify=ssl.create_default_context(cafile=p.ca_file),
        )
        assert ok.status_code == 200
        # plain HTTP to the HTTPS port gets no answer
        with pytest.raises(httpx.HTTPError):
            httpx.get(p.url.replace("https://", "http://") + "/healthz", timeout=5)
    finally:
        p.stop()
