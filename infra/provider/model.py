"""`Model`: a model version registered on the platform, uploaded by digest.

The resource's inputs carry each file's sha256 (computed when the program runs), so `diff` sees
a changed artifact without uploading anything, and an unchanged one is never uploaded again (a
moved file with the same bytes is an in-place update that only records the new path). A new
artifact is a new model version: the resource is replaced, and the deployments that reference
`model_id` roll onto it.

Kinds: `native` registers through `/api/v1/models` (presigned uploads, commit checks digests);
`ml` through the Elasticsearch trained-model API (config, base64 definition parts, vocabulary).
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from infra.provider.http import PlatformApi, PlatformError

# Inputs whose change makes another model version (or another model): replace.
REPLACE_KEYS = (
    "url",
    "kind",
    "chosen_id",
    "name",
    "version",
    "format",
    "digests",
    "signature",
    "entry_file",
    "inference_config",
    "vocabulary",
    "model_type",
    "field_names",
)
# Inputs that change in place, with no platform call: a rotated key, a moved file (same digest).
UPDATE_KEYS = ("api_key", "files", "description", "ca_file")
ML_PART_BYTES = 1024 * 1024
ML_BASE = "/_ml/trained_models"


def file_digest(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            h.update(chunk)
    return h.hexdigest()


def digests_of(files: list[str]) -> dict[str, str]:
    """{file name: sha256}: what identifies the artifact (paths may move)."""
    names = [Path(f).name for f in files]
    if len(set(names)) != len(names):
        raise ValueError(f"file names must be unique: {names}")
    return {Path(f).name: file_digest(f) for f in files}


class ModelProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        with PlatformApi.of(props) as api:
            outs = _create_ml(api, props) if props.get("kind") == "ml" else _create_native(api, props)
        return CreateResult(id_=outs["model_id"], outs={**props, **outs})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = sorted(k for k in (*REPLACE_KEYS, *UPDATE_KEYS) if olds.get(k) != news.get(k))
        replaces = [k for k in changed if k in REPLACE_KEYS]
        # A chosen id can't exist twice: the old version goes first. A generated one is replaced
        # create-first, so deployments move to the new version before the old one is deleted.
        return DiffResult(
            changes=bool(changed),
            replaces=replaces,
            delete_before_replace=bool(replaces) and bool(news.get("chosen_id")),
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Only what needs no platform call: a rotated key, a moved file with the same digest."""
        keep: dict[str, Any] = {k: olds[k] for k in ("model_id", "state", "size_bytes") if k in olds}
        return UpdateResult(outs={**news, **keep, "uploaded": []})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        with PlatformApi.of(props) as api:
            if props.get("kind") == "ml":
                api.call_or_none("DELETE", f"{ML_BASE}/{id_}")
            else:
                api.call_or_none("DELETE", f"/api/v1/models/{id_}")

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        with PlatformApi.of(props) as api:
            if props.get("kind") == "ml":
                found = api.call_or_none("GET", f"{ML_BASE}/{id_}")
                exists = bool(found and found.get("count"))
                return ReadResult(id_ if exists else None, props)
            model = api.call_or_none("GET", f"/api/v1/models/{id_}")
        if model is None:
            return ReadResult(None, props)
        return ReadResult(id_, {**props, "state": model["state"], "digests": _digests_of_view(model)})


def _digests_of_view(model: dict[str, Any]) -> dict[str, str]:
    return {f["name"]: f["sha256"] for f in model["files"]}


def _create_native(api: PlatformApi, props: dict[str, Any]) -> dict[str, Any]:
    files = {Path(f).name: f for f in props["files"]}
    digests: dict[str, str] = props["digests"]
    if props.get("chosen_id"):
        existing = api.call_or_none("GET", f"/api/v1/models/{props['chosen_id']}")
        if existing is not None and existing["state"] == "ready" and _digests_of_view(existing) == digests:
            # Already there with these bytes (a stack rebuilt, a re-import): adopt, upload nothing.
            return {
                "model_id": existing["model_id"],
                "state": "ready",
                "size_bytes": existing["size_bytes"],
                "uploaded": [],
            }
    body: dict[str, Any] = {
        "name": props["name"],
        "version": props.get("version") or "1",
        "format": props["format"],
        "files": [
            {"name": n, "sha256": digests[n], "size_bytes": os.path.getsize(p)} for n, p in files.items()
        ],
    }
    for key in ("signature", "entry_file", "description"):
        if props.get(key):
            body[key] = props[key]
    if props.get("chosen_id"):
        body["model_id"] = props["chosen_id"]
    created = api.call("POST", "/api/v1/models", json=body)
    model_id = created["model"]["model_id"]
    try:
        for target in created["uploads"]:
            api.upload(target["method"], target["url"], files[target["name"]], target["headers"])
        committed = api.call("POST", f"/api/v1/models/{model_id}/commit")
    except Exception:
        api.call_or_none("DELETE", f"/api/v1/models/{model_id}")  # no half-registered leftovers
        raise
    return {
        "model_id": model_id,
        "state": committed["state"],
        "size_bytes": committed["size_bytes"],
        "uploaded": sorted(files),
    }


def _create_ml(api: PlatformApi, props: dict[str, Any]) -> dict[str, Any]:
    model_id = props.get("chosen_id")
    if not model_id:
        raise ValueError("an ml model needs its model_id (Elasticsearch ids are chosen, not generated)")
    [path] = props["files"]
    config: dict[str, Any] = {
        "model_type": props.get("model_type") or "onnx",
        "inference_config": props["inference_config"],
        "input": {"field_names": list(props.get("field_names") or ["text_field"])},
    }
    if props.get("description"):
        config["description"] = props["description"]
    api.call("PUT", f"{ML_BASE}/{model_id}", json=config)
    try:
        data = Path(path).read_bytes()
        parts = [data[i : i + ML_PART_BYTES] for i in range(0, len(data), ML_PART_BYTES)]
        for n, chunk in enumerate(parts):
            api.call(
                "PUT",
                f"{ML_BASE}/{model_id}/definition/{n}",
                json={
                    "definition": base64.b64encode(chunk).decode(),
                    "total_definition_length": len(data),
                    "total_parts": len(parts),
                },
            )
        if props.get("vocabulary"):
            api.call("PUT", f"{ML_BASE}/{model_id}/vocabulary", json={"vocabulary": props["vocabulary"]})
    except PlatformError:
        api.call_or_none("DELETE", f"{ML_BASE}/{model_id}")
        raise
    return {"model_id": model_id, "state": "ready", "size_bytes": len(data), "uploaded": [Path(path).name]}


class Model(Resource):
    """A model version on the platform. Outputs: `model_id`, `state`, `digests`, `size_bytes`."""

    model_id: pulumi.Output[str]
    state: pulumi.Output[str]
    digests: pulumi.Output[dict[str, str]]
    size_bytes: pulumi.Output[int]

    def __init__(
        self,
        resource_name: str,
        *,
        url: pulumi.Input[str],
        api_key: pulumi.Input[str],
        name: str,
        files: list[str],
        format: str = "onnx",
        kind: str = "native",
        version: str = "1",
        model_id: str | None = None,
        signature: dict[str, Any] | None = None,
        entry_file: str | None = None,
        description: str = "",
        inference_config: dict[str, Any] | None = None,
        vocabulary: list[str] | None = None,
        model_type: str | None = None,
        field_names: list[str] | None = None,
        ca_file: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        if kind not in ("native", "ml"):
            raise ValueError(f"model kind must be native or ml, not {kind!r}")
        props = {
            "url": url,
            "api_key": pulumi.Output.secret(api_key),
            "kind": kind,
            "name": name,
            "version": version,
            "format": format,
            "files": [str(Path(f).resolve()) for f in files],
            "digests": digests_of(files),
            "chosen_id": model_id,
            "model_id": None,
            "signature": signature,
            "entry_file": entry_file,
            "description": description,
            "inference_config": inference_config,
            "vocabulary": vocabulary,
            "model_type": model_type,
            "field_names": field_names,
            "ca_file": ca_file,
            "state": None,
            "size_bytes": None,
            "uploaded": None,
        }
        secret = pulumi.ResourceOptions(additional_secret_outputs=["api_key"])
        super().__init__(ModelProvider(), resource_name, props, pulumi.ResourceOptions.merge(secret, opts))
