"""Fetching a model's files onto a node (or a batch worker): streamed from presigned URLs,
verified against their sha256 before use. A partial or corrupt download is never used: it is
written to a `.part` file and renamed only once its digest matches."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import httpx

from modelfleet.runtime.backends import sha256_file
from modelfleet.runtime.errors import ModelLoadError
from schemas.nodes import ArtifactSource, AssignedModel

DOWNLOAD_ATTEMPTS = 3


class TransientDownloadError(ModelLoadError):
    """The transfer broke (network, server error): worth another try, unlike a digest mismatch."""


def model_dir(root: Path, project_id: str, model: AssignedModel) -> Path:
    return root / project_id / model.model_id


def fetch_model(root: Path, project_id: str, model: AssignedModel, client: httpx.Client) -> Path:
    """Download (or re-verify) every file; returns the entry file's path."""
    target = model_dir(root, project_id, model)
    target.mkdir(parents=True, exist_ok=True)
    for f in model.files:
        dest = target / f.name
        if dest.exists() and not dest.is_symlink() and sha256_file(dest) == f.sha256:
            continue
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                _download(f, dest, client)
                break
            except TransientDownloadError:
                if attempt == DOWNLOAD_ATTEMPTS:
                    raise
                time.sleep(0.2 * 2**attempt)
    entry = target / model.entry_file
    if sha256_file(entry) != next(f.sha256 for f in model.files if f.name == model.entry_file):
        raise ModelLoadError(f"'{model.entry_file}' changed on disk after verification; refused")
    return entry


def _download(f: ArtifactSource, dest: Path, client: httpx.Client) -> None:
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    try:
        with client.stream("GET", f.url) as resp:
            if resp.status_code != 200:
                error = TransientDownloadError if resp.status_code >= 500 else ModelLoadError
                raise error(f"download of '{f.name}' failed: HTTP {resp.status_code}")
            with part.open("wb") as out:
                for chunk in resp.iter_bytes(1024 * 1024):
                    h.update(chunk)
                    out.write(chunk)
    except httpx.HTTPError as e:
        raise TransientDownloadError(f"download of '{f.name}' failed: {e}") from e
    if h.hexdigest() != f.sha256:
        part.unlink(missing_ok=True)
        raise ModelLoadError(f"'{f.name}' does not match its sha256 {f.sha256}; refused")
    os.replace(part, dest)
