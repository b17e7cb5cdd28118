"""`modelfleet.Client`: typed methods over the native API (`/api/v1`) and the OIP inference routes.

Answers are the pydantic models of `schemas/` (the very models the handlers answer with), errors
are the exception tree of `sdk/errors.py`, and waiters take a timeout::

    from modelfleet import Client

    with Client("http://127.0.0.1:8080", api_key="mfk_...:...") as c:
        model = c.push_model("digits.onnx", name="digits", format="onnx")
        c.create_deployment(deployment_id="digits", model_id=model.model_id)
        c.wait_until_started("digits", timeout=120)
        print(c.infer("digits", {"input": x}))

`ca_file` (else $MODELFLEET_CA_FILE, else the system store) is trusted for HTTPS, e.g. the local
gateway's self-signed CA; `verify=False` must be asked for (`modelfleet/trust.py`).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
from pydantic import BaseModel

from modelfleet.core.lifecycle import DeploymentState
from modelfleet.runtime.oip import datatype_to_numpy, numpy_to_datatype
from modelfleet.sdk.errors import (
    ConnectionFailed,
    DeploymentFailed,
    NotFound,
    Unauthorized,
    WaitTimeout,
    error_from_response,
)
from modelfleet.trust import tls_verify
from schemas.deployments import DeploymentCreate, DeploymentList, DeploymentUpdate, DeploymentView
from schemas.events import EventList, StatusEvent
from schemas.keys import KeyCreate, KeyCreated, KeyList, KeyView, Role
from schemas.models import ModelCreate, ModelCreated, ModelFormat, ModelList, ModelView
from schemas.nodes import NodeList, NodeView
from schemas.projects import ProjectList, ProjectView
from schemas.tensors import Signature

M = TypeVar("M", bound=BaseModel)
Progress = Callable[[int], None]  # called with the bytes sent since the last call
CORRELATION_HEADER = "x-correlation-id"
PIPELINES = "/mlops/api/v1"  # the pipelines face
_CHUNK = 256 * 1024


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            h.update(chunk)
    return h.hexdigest()


def _stream(path: Path, progress: Progress | None) -> Iterator[bytes]:
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            if progress is not None:
                progress(len(chunk))
            yield chunk


@dataclass(frozen=True)
class InferResult:
    """One inference: the decoded outputs, and what the gateway said about it."""

    outputs: dict[str, np.ndarray]
    raw: dict[str, Any]
    latency_ms: float  # measured by the client, request sent to answer read
    model_version: str | None
    request_id: str | None
    correlation_id: str | None


def oip_body(inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    return {
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


def decode_outputs(answer: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {
        o["name"]: np.asarray(o["data"], dtype=datatype_to_numpy(o["datatype"])).reshape(o["shape"])
        for o in answer.get("outputs", [])
    }


class Client:
    def __init__(
        self,
        endpoint: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        ca_file: str | Path | None = None,
        verify: bool = True,
        correlation_id: str | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._api_key = api_key
        self._access_token: str | None = None  # the pipelines face's, from the API key
        self._verify = tls_verify(ca_file, verify)
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        if correlation_id:
            headers[CORRELATION_HEADER] = correlation_id
        self._http = httpx.Client(
            base_url=self.endpoint, timeout=timeout, headers=headers, verify=self._verify
        )

    # --- plumbing ----------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def send_raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response of a request whatever its status (the key and CA applied)."""
        try:
            return self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise ConnectionFailed(f"cannot reach {self.endpoint}: {e}") from None

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The raw response of a request; an error status raises the matching `ApiError`."""
        r = self.send_raw(method, path, **kwargs)
        if r.status_code >= 400:
            raise error_from_response(r)
        return r

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer of a request (None when empty)."""
        r = self.send(method, path, **kwargs)
        if r.status_code == 204 or not r.content:
            return None
        return r.json()

    def _get(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        return model.model_validate(self.request(method, path, **kwargs))

    # --- models ------------------------------------------------------------------------------------
    def push_model(
        self,
        files: Path | str | Iterable[Path | str],
        *,
        name: str,
        format: ModelFormat | str,
        version: str = "1",
        model_id: str | None = None,
        entry_file: str | None = None,
        signature: Signature | Mapping[str, Any] | None = None,
        description: str = "",
        progress: Progress | None = None,
    ) -> ModelView:
        """Register, upload every file straight to storage (streamed, `progress` per chunk), commit.

        The body is checked against `ModelCreate` before anything is sent."""
        paths = [Path(files)] if isinstance(files, (str, Path)) else [Path(f) for f in files]
        spec = ModelCreate.model_validate(
            {
                "name": name,
                "version": version,
                "format": format,
                "model_id": model_id,
                "entry_file": entry_file,
                "description": description,
                "signature": signature.model_dump() if isinstance(signature, BaseModel) else signature,
                "files": [
                    {"name": p.name, "sha256": file_sha256(p), "size_bytes": p.stat().st_size} for p in paths
                ],
            }
        )
        created = self._get(
            ModelCreated, "POST", "/api/v1/models", json=spec.model_dump(mode="json", exclude_none=True)
        )
        by_name = {p.name: p for p in paths}
        with httpx.Client(timeout=300, verify=self._verify) as uploads:
            for target in created.uploads:
                path = by_name[target.name]
                headers = {**target.headers, "content-length": str(path.stat().st_size)}
                try:
                    r = uploads.request(
                        target.method, target.url, content=_stream(path, progress), headers=headers
                    )
                except httpx.TransportError as e:
                    raise ConnectionFailed(f"upload of {target.name} failed: {e}") from None
                if r.status_code >= 300:
                    raise error_from_response(r)
        return self._get(ModelView, "POST", f"/api/v1/models/{created.model.model_id}/commit")

    def list_models(self) -> list[ModelView]:
        return self._get(ModelList, "GET", "/api/v1/models").models

    def get_model(self, model_id: str) -> ModelView:
        return self._get(ModelView, "GET", f"/api/v1/models/{model_id}")

    def delete_model(self, model_id: str) -> None:
        self.request("DELETE", f"/api/v1/models/{model_id}")

    # --- deployments -------------------------------------------------------------------------------
    def create_deployment(
        self, spec: DeploymentCreate | None = None, *, idempotency_key: str | None = None, **fields: Any
    ) -> DeploymentView:
        """Create from a `DeploymentCreate` or its fields (validated here first, with the API's rules)."""
        body = spec if spec is not None else DeploymentCreate.model_validate(fields)
        headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
        payload = body.model_dump(mode="json", exclude_unset=True)
        return self._get(DeploymentView, "POST", "/api/v1/deployments", json=payload, headers=headers)

    def list_deployments(self) -> list[DeploymentView]:
        return self._get(DeploymentList, "GET", "/api/v1/deployments").deployments

    def get_deployment(self, deployment_id: str) -> DeploymentView:
        return self._get(DeploymentView, "GET", f"/api/v1/deployments/{deployment_id}")

    def update_deployment(
        self, deployment_id: str, *, allocations: int, version: int | None = None
    ) -> DeploymentView:
        """Change allocations; `version` defaults to the one read just now (optimistic lock)."""
        if version is None:
            version = self.get_deployment(deployment_id).version
        body = DeploymentUpdate(version=version, allocations=allocations).model_dump(mode="json")
        return self._get(DeploymentView, "PATCH", f"/api/v1/deployments/{deployment_id}", json=body)

    def stop_deployment(self, deployment_id: str) -> DeploymentView:
        return self._get(DeploymentView, "POST", f"/api/v1/deployments/{deployment_id}/stop")

    def start_deployment(self, deployment_id: str) -> DeploymentView:
        return self._get(DeploymentView, "POST", f"/api/v1/deployments/{deployment_id}/start")

    def delete_deployment(self, deployment_id: str, *, force: bool = False) -> None:
        self.request("DELETE", f"/api/v1/deployments/{deployment_id}", params={"force": str(force).lower()})

    def deployment_events(self, deployment_id: str, limit: int = 100) -> list[StatusEvent]:
        path = f"/api/v1/deployments/{deployment_id}/events"
        return self._get(EventList, "GET", path, params={"limit": limit}).events

    def wait_for_state(
        self,
        deployment_id: str,
        *states: DeploymentState | str,
        timeout: float = 300.0,
        interval: float = 0.2,
        on_poll: Callable[[DeploymentView], None] | None = None,
    ) -> DeploymentView:
        """Poll until the deployment is in one of `states`. Raises `DeploymentFailed` when it
        fails (unless `failed` is wanted) and `WaitTimeout` (a TimeoutError) at the deadline."""
        wanted = {DeploymentState(s) for s in states}
        deadline = time.monotonic() + timeout
        while True:
            d = self.get_deployment(deployment_id)
            if on_poll is not None:
                on_poll(d)
            if d.state in wanted:
                return d
            if d.state == DeploymentState.FAILED:
                raise DeploymentFailed(deployment_id, d.reason or "no reason given")
            if time.monotonic() >= deadline:
                names = ", ".join(sorted(s.value for s in wanted))
                raise WaitTimeout(
                    f"deployment {deployment_id} is {d.state.value} ({d.reason or 'no reason'}) after "
                    f"{timeout:g}s, not {names}",
                    last=d,
                )
            time.sleep(interval)

    def wait_until_started(
        self,
        deployment_id: str,
        timeout: float = 300.0,
        interval: float = 0.2,
        on_poll: Callable[[DeploymentView], None] | None = None,
    ) -> DeploymentView:
        return self.wait_for_state(
            deployment_id, DeploymentState.STARTED, timeout=timeout, interval=interval, on_poll=on_poll
        )

    def wait_until_deleted(self, deployment_id: str, timeout: float = 120.0, interval: float = 0.2) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                last = self.get_deployment(deployment_id)
            except NotFound:
                return
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"deployment {deployment_id} still exists after {timeout:g}s", last=last)
            time.sleep(interval)

    # --- nodes, keys, projects ---------------------------------------------------------------------
    def list_nodes(self) -> list[NodeView]:
        return self._get(NodeList, "GET", "/api/v1/nodes").nodes

    def create_key(
        self,
        roles: Iterable[Role | str],
        *,
        name: str = "",
        expires_in_seconds: int | None = None,
    ) -> KeyCreated:
        body = KeyCreate(name=name, roles=[Role(r) for r in roles], expires_in_seconds=expires_in_seconds)
        return self._get(
            KeyCreated, "POST", "/api/v1/keys", json=body.model_dump(mode="json", exclude_none=True)
        )

    def list_keys(self) -> list[KeyView]:
        return self._get(KeyList, "GET", "/api/v1/keys").keys

    def revoke_key(self, key_id: str) -> KeyView:
        return self._get(KeyView, "DELETE", f"/api/v1/keys/{key_id}")

    def list_projects(self) -> list[ProjectView]:
        return self._get(ProjectList, "GET", "/api/v1/projects").projects

    # --- pipelines (the `/mlops` face): deployments, executions and their logs ----------------------
    def pipelines_request(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request to the pipelines face, which takes a short-lived access token that the API
        key is exchanged for (`POST /auth/refresh`); an expired token is renewed once."""
        for attempt in range(2):
            if self._access_token is None or attempt:
                answer = self.request(
                    "POST", f"{PIPELINES}/auth/refresh", json={"refresh_token": self._api_key}
                )
                self._access_token = str(answer["access_token"])
            headers = {**kwargs.pop("headers", {}), "authorization": f"Bearer {self._access_token}"}
            try:
                return self.request(method, f"{PIPELINES}{path}", headers=headers, **kwargs)
            except Unauthorized:
                if attempt:
                    raise
        return None

    def list_pipeline_deployments(self) -> list[dict[str, Any]]:
        return list(self.pipelines_request("GET", "/deployments") or [])

    def list_executions(self, deployment: str) -> list[dict[str, Any]]:
        """The executions of one pipeline deployment, as the pipelines face lists them."""
        return list(self.pipelines_request("GET", f"/deployments/{deployment}/executions") or [])

    def get_execution(self, execution_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.pipelines_request(
            "GET", f"/executions/{execution_id}", params={"include_io_values": "false"}
        )
        return answer

    def execution_logs(self, execution_id: str, from_ms: int | None = None) -> list[dict[str, Any]]:
        """An execution's log lines (`timestamp`, `message`, `stream`), oldest first."""
        body = {"from_ms": from_ms} if from_ms is not None else {}
        answer = self.pipelines_request("POST", f"/executions/{execution_id}/logs", json=body)
        return [line for page in answer or [] for line in page]

    # --- inference and monitoring ------------------------------------------------------------------
    def model_metadata(self, deployment_id: str) -> dict[str, Any]:
        """OIP model metadata: the input and output tensors, the versions, the state."""
        result: dict[str, Any] = self.request("GET", f"/v2/models/{deployment_id}")
        return result

    def infer_json(
        self,
        deployment_id: str,
        body: Mapping[str, Any],
        *,
        version: str | None = None,
        correlation_id: str | None = None,
    ) -> InferResult:
        """One OIP v2 JSON inference, with its latency and the gateway's ids."""
        path = f"/v2/models/{deployment_id}" + (f"/versions/{version}" if version else "") + "/infer"
        cid = correlation_id or self._http.headers.get(CORRELATION_HEADER) or uuid.uuid4().hex
        started = time.perf_counter()
        r = self.send("POST", path, json=dict(body), headers={CORRELATION_HEADER: cid})
        latency_ms = (time.perf_counter() - started) * 1000
        answer = r.json()
        return InferResult(
            outputs=decode_outputs(answer),
            raw=answer,
            latency_ms=latency_ms,
            model_version=r.headers.get("x-model-version"),
            request_id=r.headers.get("x-request-id"),
            correlation_id=r.headers.get(CORRELATION_HEADER, cid),
        )

    def infer(
        self, deployment_id: str, inputs: Mapping[str, np.ndarray], version: str | None = None
    ) -> dict[str, np.ndarray]:
        return self.infer_json(deployment_id, oip_body(inputs), version=version).outputs

    def metrics(self) -> str:
        """The Prometheus exposition text of `/metrics`, scoped to this key's project."""
        return self.send("GET", "/metrics").text
