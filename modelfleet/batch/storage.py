"""Reading inputs and writing outputs of batch jobs: S3 (through the S3 adapter) or, when the
operator enabled a local data root, local files. Locations were checked by `paths` before any of
this runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from modelfleet.adapters.errors import ItemNotFound
from modelfleet.adapters.s3 import ArtifactStore
from modelfleet.batch.paths import DataLocation

__all__ = ["DataStorage", "split_uri"]


def split_uri(uri: str) -> DataLocation:
    """A URI this module wrote or listed (already checked) back to its location."""
    if uri.startswith("s3://"):
        bucket, _, key = uri[5:].partition("/")
        return DataLocation("s3", bucket, key)
    return DataLocation("file", "", uri.removeprefix("file://"))


class DataStorage:
    def __init__(self, s3_client: Any) -> None:
        self._client = s3_client
        self._buckets: dict[str, ArtifactStore] = {}

    def _bucket(self, name: str) -> ArtifactStore:
        if name not in self._buckets:
            self._buckets[name] = ArtifactStore(self._client, name)
        return self._buckets[name]

    def list(self, prefix: DataLocation) -> list[tuple[DataLocation, int]]:
        """Objects under a prefix (for a key without a trailing '/', that object if it exists)."""
        if prefix.scheme == "s3":
            found = self._bucket(prefix.bucket).list_objects(prefix.key)
            return [(DataLocation("s3", prefix.bucket, k), size) for k, size in found if not k.endswith("/")]
        root = Path(prefix.key)
        if root.is_file():
            return [(prefix, root.stat().st_size)]
        if not root.is_dir():
            return []
        out = []
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                out.append((DataLocation("file", "", str(path)), path.stat().st_size))
        return out

    def read(self, loc: DataLocation, start: int | None = None, end: int | None = None) -> bytes:
        if loc.scheme == "s3":
            return self._bucket(loc.bucket).get_bytes(loc.key, start, end)
        path = Path(loc.key)
        if not path.is_file() or path.is_symlink():
            raise ItemNotFound(loc.key)
        with path.open("rb") as f:
            if start is None or end is None:
                return f.read()
            f.seek(start)
            return f.read(max(0, end - start))

    def write(self, loc: DataLocation, data: bytes) -> None:
        """Put an object (overwrites: outputs have deterministic keys, so a redelivery replaces)."""
        if loc.scheme == "s3":
            self._bucket(loc.bucket).put_bytes(loc.key, data)
            return
        path = Path(loc.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
