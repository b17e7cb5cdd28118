"""What the agent keeps on disk, so it serves after a restart without network.

    <data_dir>/identity.json   node id, project, node key (0600; the key is a credential)
    <data_dir>/desired.json    the last desired state received, with its ETag
    <data_dir>/active.json     the last good state: per service, the model serving and the previous one
    <data_dir>/models/<id>/    verified model files (a directory appears only once complete)
    <data_dir>/downloads/<id>/ files being downloaded (`.part`, resumable); never loaded from

Every JSON file is replaced atomically (write a temporary file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def write_json(path: Path, doc: Any, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as out:
            json.dump(doc, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@dataclass
class Identity:
    node_id: str
    project_id: str
    node_key: str
    control_url: str = ""


@dataclass
class ActiveModel:
    """A service's model as served: enough to load it again from disk with no network."""

    service_id: str
    name: str
    model_id: str
    format: str
    entry_file: str
    files: dict[str, str]  # name -> sha256
    signature: dict[str, Any] | None = None
    previous: list[dict[str, Any]] = field(default_factory=list)  # older ActiveModels, newest first


class AgentStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        self.models = self.root / "models"
        self.downloads = self.root / "downloads"
        self.models.mkdir(exist_ok=True)
        self.downloads.mkdir(exist_ok=True)

    # identity -------------------------------------------------------------------------------------------
    def identity(self) -> Identity | None:
        doc = read_json(self.root / "identity.json")
        return Identity(**doc) if doc else None

    def save_identity(self, ident: Identity) -> None:
        write_json(self.root / "identity.json", asdict(ident), mode=0o600)

    # desired ---------------------------------------------------------------------------------------------
    def desired(self) -> tuple[dict[str, Any] | None, str | None]:
        doc = read_json(self.root / "desired.json")
        if not doc:
            return None, None
        return doc["desired"], doc.get("etag")

    def save_desired(self, desired: dict[str, Any], etag: str | None) -> None:
        write_json(self.root / "desired.json", {"desired": desired, "etag": etag})

    # active (last good state) -----------------------------------------------------------------------------
    def active(self) -> dict[str, ActiveModel]:
        doc = read_json(self.root / "active.json") or {}
        return {sid: ActiveModel(**m) for sid, m in doc.items()}

    def save_active(self, active: dict[str, ActiveModel]) -> None:
        write_json(self.root / "active.json", {sid: asdict(m) for sid, m in active.items()})

    def model_dir(self, model_id: str) -> Path:
        return self.models / model_id

    def keep_only(self, model_ids: set[str]) -> None:
        """Remove model directories no service serves or may roll back to."""
        for d in self.models.iterdir():
            if d.is_dir() and d.name not in model_ids:
                _rmtree(d)


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
