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

    def put_new(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> bool:
        """Create the object only if the key is free (S3 conditional write). False: it exists."""
        try:
            self._c.put_object(
                Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*", Metadata=metadata or {}
            )
        except ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412:
                return False
            raise BackendUnavailable(f"S3 put_object failed: {e}") from e
        except BotoCoreError as e:
            raise BackendUnavailable(f"S3 put_object failed: {e}") from e
        return True

    def head(self, key: str) -> dict[str, Any]:
        """The object's size and user metadata; ItemNotFound if absent."""
        got = self._call("head_object", Key=key)
        return {"size": int(got.get("ContentLength", 0)), "metadata": dict(got.get("Metadata") or {})}

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = self._call("list_objects_v2", Prefix=prefix, **extra)
            keys += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return keys
            token = page.get("NextContinuationToken")

    def get_bytes(self, key: str, start: int | None = None, end: int | None = None) -> bytes:
        """An object, or its bytes [start, end) (a ranged GET) when given."""
        extra = {"Range": f"bytes={start}-{end - 1}"} if start is not None and end is not None else {}
        if extra and end is not None and start is not None and end <= start:
            return b""
        body = self._call("get_object", Key=key, **extra)["Body"]
        try:
            data: bytes = body.read()
            return data
        finally:
            body.close()

    def list_objects(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every object under `prefix`, in key order."""
        found: list[tuple[str, int]] = []
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            page = self._call("list_objects_v2", Prefix=prefix, **extra)
            found += [(o["Key"], int(o.get("Size", 0))) for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return found
            token = page.get("NextContinuationToken")

    def upload_file(self, key: str, path: str) -> None:
        """A local file to S3 (multipart for large files, handled by boto3's transfer manager)."""
        try:
            self._c.upload_file(path, self.bucket, key)
        except (ClientError, BotoCoreError) as e:
            raise BackendUnavailable(f"S3 upload failed: {e}") from e

    def delete(self, key: str) -> None:
        self._call("delete_object", Key=key)
