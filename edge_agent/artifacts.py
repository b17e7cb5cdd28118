"""Model files onto the device: resumable downloads from presigned URLs, verified before use.

A file is fetched into `downloads/<model>/<name>.part`; an interrupted transfer resumes with an HTTP
Range request from the bytes already there. The complete file must have the declared size and sha256
(one changed byte is refused, and the part is discarded). Only when every file of the model is verified
is the staging directory renamed to `models/<model>/`, so a partial download can never be activated.
`verify_model_dir` checks the digests again right before a load (a file changed on disk is refused).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from modelfleet.runtime.backends import sha256_file


class ArtifactError(Exception):
    """A file that must not be used (wrong digest or size): not worth retrying."""


class TransferError(Exception):
    """The transfer broke or the link expired: retry (resuming) later."""

    def __init__(self, message: str, stale_url: bool = False) -> None:
        super().__init__(message)
        self.stale_url = stale_url


def fetch_model(
    model_id: str, files: Sequence[Mapping[str, Any]], downloads: Path, models: Path, client: httpx.Client
) -> Path:
    """Download and verify every file; returns `models/<model_id>` once all are verified."""
    final = models / model_id
    if final.is_dir():
        verify_model_dir(final, {f["name"]: f["sha256"] for f in files})
        return final
    staging = downloads / model_id
    staging.mkdir(parents=True, exist_ok=True)
    for f in files:
        dest = staging / f["name"]
        if dest.is_file() and dest.stat().st_size == f["size_bytes"] and sha256_file(dest) == f["sha256"]:
            continue
        _download(f, dest, client)
    # every file is whole and verified: the model directory appears in one rename
    os.replace(staging, final)
    return final


def _download(f: Mapping[str, Any], dest: Path, client: httpx.Client) -> None:
    part = dest.with_name(dest.name + ".part")
    size, expected = int(f["size_bytes"]), str(f["sha256"])
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    digest = hashlib.sha256()
    if have:
        with part.open("rb") as existing:
            while chunk := existing.read(1 << 20):
                digest.update(chunk)
    headers = {"Range": f"bytes={have}-"} if 0 < have < size else {}
    try:
        if have < size:
            with client.stream("GET", f["url"], headers=headers) as resp:
                if resp.status_code == 200 and have:  # the server ignored the range: start over
                    have, digest = 0, hashlib.sha256()
                    part.unlink(missing_ok=True)
                elif resp.status_code not in (200, 206):
                    stale = resp.status_code in (400, 403)  # an expired presigned link
                    raise TransferError(f"download of '{f['name']}' failed: HTTP {resp.status_code}", stale)
                with part.open("ab") as out:
                    for chunk in resp.iter_bytes():  # as received: a cut keeps every byte so far
                        digest.update(chunk)
                        out.write(chunk)
                        if out.tell() > size:
                            break
    except httpx.HTTPError as e:
        raise TransferError(f"download of '{f['name']}' interrupted: {type(e).__name__}") from e
    got = part.stat().st_size
    if got < size:
        raise TransferError(f"download of '{f['name']}' ended early ({got} of {size} bytes)")
    if got != size or digest.hexdigest() != expected:
        part.unlink(missing_ok=True)
        raise ArtifactError(f"'{f['name']}' does not match its sha256 {expected[:12]}...; refused")
    os.replace(part, dest)


def verify_model_dir(model_dir: Path, digests: Mapping[str, str]) -> None:
    """Every file present, a regular file, and matching its digest; else ArtifactError."""
    for name, sha in digests.items():
        path = model_dir / name
        if path.is_symlink() or not path.is_file():
            raise ArtifactError(f"'{name}' is missing from {model_dir.name}")
        if sha256_file(path) != sha:
            raise ArtifactError(f"'{name}' changed on disk since it was verified; refused")


def discard(downloads: Path, models: Path, model_id: str) -> None:
    shutil.rmtree(downloads / model_id, ignore_errors=True)
    shutil.rmtree(models / model_id, ignore_errors=True)
