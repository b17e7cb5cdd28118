"""The first, dict-returning client of the native API and the OIP inference routes, kept for the
tests, the benchmark and the fault suite. New code uses the typed SDK, `modelfleet.Client`
(`modelfleet/sdk/`); errors here are the same exception tree (`modelfleet.sdk.errors`).

client = Client("http://127.0.0.1:8080", api_key="mfk_...:...")
model = client.register_model("digits.onnx", name="digits", format="onnx")
client.deploy("digits", model_id=model["model_id"])
client.wait_for_state("digits", "started")
client.infer("digits", {"input": x})
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from modelfleet.runtime.oip import datatype_to_numpy, numpy_to_datatype
from modelfleet.sdk.errors import ApiError, error_from_response
from modelfleet.trust import tls_verify

__all__ = ["ApiError", "Client"]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            h.update(chunk)
    return h.hexdigest()


class Client:
    def __init__(
        self,
        url: str,
        api_key: str,
        timeout: float = 60.0,
        ca_file: str | Path | None = None,
        verify: bool = True,
    ) -> None:
        """`ca_file` (or $MODELFLEET_CA_FILE) is the CA an HTTPS platform's certificate chains to,
        e.g. the local gateway's self-signed one; `verify=False` is an explicit opt-out."""
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"authorization": f"Bearer {api_key}"},
            verify=tls_verify(ca_file, verify),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self._http.request(method, path, **kwargs)
        if r.status_code >= 400:
            raise error_from_response(r)
        if r.status_code == 204 or not r.content:
            return None
        return r.json()

    # --- models ---------------------------------------------------------------------------------
    def register_model(
        self,
        files: Path | str | Iterable[Path | str],
        *,
        name: str,
        format: str,
        version: str = "1",
        signature: Mapping[str, Any] | None = None,
        model_id: str | None = None,
        entry_file: str | None = None,
    ) -> dict[str, Any]:
        """Register, upload each file straight to storage (streamed), and commit."""
        paths = [Path(files)] if isinstance(files, (str, Path)) else [Path(f) for f in files]
        body: dict[str, Any] = {
            "name": name,
            "version": version,
            "format": format,
            "files": [{"name": p.name, "sha256": _sha256(p), "size_bytes": p.stat().st_size} for p in paths],
        }
        if signature is not None:
            body["signature"] = dict(signature)
        if model_id is not None:
            body["model_id"] = model_id
        if entry_file is not None:
            body["entry_file"] = entry_file
        created = self.request("POST", "/api/v1/models", json=body)
        by_name = {p.name: p for p in paths}
        for target in created["uploads"]:
            with by_name[target["name"]].open("rb") as f:
                r = httpx.request(
                    target["method"], target["url"], content=f, headers=target["headers"], timeout=300
                )
            if r.status_code >= 300:
                raise error_from_response(r)
        result: dict[str, Any] = self.request("POST", f"/api/v1/models/{created['model']['model_id']}/commit")
        return result

    def get_model(self, model_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/api/v1/models/{model_id}")
        return result

    # --- deployments ------------------------------------------------------------------------------
    def deploy(self, deployment_id: str, **spec: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", "/api/v1/deployments", json={"deployment_id": deployment_id, **spec}
        )
        return result

    def get_deployment(self, deployment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/api/v1/deployments/{deployment_id}")
        return result

    def stop(self, deployment_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/api/v1/deployments/{deployment_id}/stop")
        return result

    def delete(self, deployment_id: str, force: bool = False) -> None:
        self.request("DELETE", f"/api/v1/deployments/{deployment_id}", params={"force": str(force).lower()})

    def events(self, deployment_id: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", f"/api/v1/deployments/{deployment_id}/events")[
            "events"
        ]
        return result

    def wait_for_state(
        self, deployment_id: str, *states: str, timeout: float = 60.0, interval: float = 0.1
    ) -> dict[str, Any]:
        """Poll until the deployment is in one of `states`; raise TimeoutError with the last state."""
        deadline = time.monotonic() + timeout
        while True:
            d = self.get_deployment(deployment_id)
            if d["state"] in states:
                return d
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"deployment {deployment_id} is {d['state']} ({d['reason']}), not {states}"
                )
            time.sleep(interval)

    # --- inference --------------------------------------------------------------------------------
    def infer(
        self, deployment_id: str, inputs: Mapping[str, np.ndarray], version: str | None = None
    ) -> dict[str, np.ndarray]:
        body = {
            "inputs": [
                {
                    "name": n,
                    "datatype": numpy_to_datatype(a.dtype).value,
                    "shape": list(a.shape),
                    "data": a.ravel().tolist(),
                }
                for n, a in inputs.items()
            ]
        }
        path = f"/v2/models/{deployment_id}" + (f"/versions/{version}" if version else "") + "/infer"
        out = self.request("POST", path, json=body)
        return {
            o["name"]: np.asarray(o["data"], dtype=datatype_to_numpy(o["datatype"])).reshape(o["shape"])
            for o in out["outputs"]
        }
