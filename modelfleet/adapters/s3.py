"""S3 adapter: model artifacts. Uploads and downloads go straight to S3 through presigned URLs,
so no file passes through an API handler; the handler only streams an object to verify it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from modelfleet.adapters.errors import BackendUnavailable, ItemNotFound

CHUNK = 1024 * 1024


class ArtifactStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self._c = client
        self.bucket = bucket

    def _call(self, op: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._c, op)(Bucket=self.bucket, **kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ItemNotFound(kwargs.get("Key", "")) from e
            raise BackendUnavailable(f"S3 {op} failed: {code or e}") from e
        except BotoCoreError as e:
            raise BackendUnavailable(f"S3 {op} failed: {e}") from e

    def presign_put(self, key: str, expires_in: int) -> str:
        url: str = self._c.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )
        return url

    def presign_get(self, key: str, expires_in: int) -> str:
        url: str = self._c.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )
        return url

    def stream(self, key: str) -> Iterator[bytes]:
        body = self._call("get_object", Key=key)["Body"]
        try:
            yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def digest(self, key: str) -> tuple[str, int]:
        """sha256 and size of an object, streamed (never held whole in memory)."""
        h = hashlib.sha256()
        n = 0
        for chunk in self.stream(key):
            h.update(chunk)
            n += len(chunk)
        return h.hexdigest(), n

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call("put_object", Key=key, Body=data)

    def delete(self, key: str) -> None:
        self._call("delete_object", Key=key)
