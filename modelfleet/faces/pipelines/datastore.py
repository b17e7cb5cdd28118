"""The data store: each project's objects under `datastore/{project_id}/` of the artifacts bucket,
uploaded and downloaded through presigned URLs (S3-style POST form for uploads, as the client
sends it; GET for downloads, whose errors are S3's XML, as the client parses them)."""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from modelfleet.adapters.errors import BackendUnavailable, ItemNotFound
from modelfleet.control.errors import InvalidRequest, NotFound
from modelfleet.faces.pipelines.store import datastore_key

MAX_UPLOAD_BYTES = 5 * 1024**3
LIST_PAGE = 1000


def clean_path(path: str | None, allow_empty: bool = False) -> str:
    """A relative object path, or InvalidRequest: no `..`, no absolute path, no NUL."""
    raw = (path or "").strip()
    if not raw:
        if allow_empty:
            return ""
        raise InvalidRequest("path_to_object is required")
    if "\x00" in raw or "\\" in raw or len(raw) > 1024:
        raise InvalidRequest("the object path has a NUL byte, a backslash or is too long")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidRequest("the object path may not contain '..'")
    cleaned = posixpath.join(*parts) if parts else ""
    if not cleaned and not allow_empty:
        raise InvalidRequest("path_to_object is empty")
    return cleaned


class DataStore:
    def __init__(self, client: Any, bucket: str, url_ttl_seconds: int) -> None:
        self._c = client
        self._bucket = bucket
        self._ttl = url_ttl_seconds

    def _call(self, op: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._c, op)(Bucket=self._bucket, **kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ItemNotFound(kwargs.get("Key", "")) from e
            raise BackendUnavailable(f"S3 {op} failed: {code or e}") from e
        except BotoCoreError as e:
            raise BackendUnavailable(f"S3 {op} failed: {e}") from e

    def upload_url(self, project_id: str, path: str) -> dict[str, Any]:
        key = datastore_key(project_id, clean_path(path))
        post = self._c.generate_presigned_post(
            self._bucket, key, Conditions=[["content-length-range", 0, MAX_UPLOAD_BYTES]], ExpiresIn=self._ttl
        )
        return {"signed_url": post["url"], "fields": post["fields"]}

    def download_url(self, project_id: str, path: str) -> dict[str, str]:
        key = datastore_key(project_id, clean_path(path))
        url: str = self._c.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=self._ttl
        )
        return {"signed_url": url}

    def list(self, project_id: str, folder: str | None, token: str | None) -> dict[str, Any]:
        prefix = datastore_key(project_id, "")
        sub = clean_path(folder, allow_empty=True)
        if sub:
            prefix += sub.rstrip("/") + "/"
        extra = {"ContinuationToken": token} if token else {}
        page = self._call("list_objects_v2", Prefix=prefix, MaxKeys=LIST_PAGE, **extra)
        root = datastore_key(project_id, "")
        items = [
            {
                "path": o["Key"][len(root) :],
                "size": int(o.get("Size", 0)),
                "last_modified": o["LastModified"].isoformat() if o.get("LastModified") else None,
            }
            for o in page.get("Contents", [])
        ]
        return {"items": items, "continuation_token": page.get("NextContinuationToken")}

    def information(self, project_id: str, path: str) -> dict[str, Any]:
        clean = clean_path(path)
        try:
            head = self._call("head_object", Key=datastore_key(project_id, clean))
        except ItemNotFound:
            raise NotFound("data-store object", clean) from None
        return {
            "path": clean,
            "size": int(head.get("ContentLength", 0)),
            "last_modified": head["LastModified"].isoformat() if head.get("LastModified") else None,
        }

    def delete(self, project_id: str, path: str) -> dict[str, str]:
        clean = clean_path(path)
        self._call("delete_object", Key=datastore_key(project_id, clean))
        return {"path": clean}

    def put(self, project_id: str, path: str, data: bytes) -> None:
        self._call("put_object", Key=datastore_key(project_id, clean_path(path)), Body=data)

    def get_to_file(self, project_id: str, path: str, dest: Path) -> None:
        body = self._call("get_object", Key=datastore_key(project_id, clean_path(path)))["Body"]
        try:
            with open(dest, "wb") as out:
                for chunk in body.iter_chunks(1024 * 1024):
                    out.write(chunk)
        finally:
            body.close()
