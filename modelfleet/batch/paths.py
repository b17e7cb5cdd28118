"""Where a batch job may read and write: S3 URIs in the project's granted buckets, checked before
any I/O.

``src_path`` and ``dest_path`` go through the outbound URL guard (``modelfleet.core.url_guard``)
with a policy of the ``s3`` scheme and the buckets the operator granted the project
(``Settings.batch_buckets``). Everything else is refused with the guard's stable code: other
schemes (``https://...obs...`` as in the seed's samples, ``http``, ``ftp``), other buckets, ``..``
segments. Local files (``file:///...``) are refused too unless the operator names a local data
root (``Settings.batch_local_root``); then only paths inside that root are allowed.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

from modelfleet.core.url_guard import RefusalCode, UrlPolicy, UrlRefused, check_url

__all__ = ["DataLocation", "DataPathPolicy", "check_data_path", "policy_for"]


@dataclass(frozen=True)
class DataPathPolicy:
    buckets: frozenset[str] = frozenset()
    local_root: str | None = None  # an absolute directory; None: local files are refused


@dataclass(frozen=True)
class DataLocation:
    """A checked place: ``s3`` (bucket + key or prefix) or ``file`` (bucket is "", key absolute)."""

    scheme: str
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.scheme == "s3" else f"file://{self.key}"

    def child(self, relative: str) -> DataLocation:
        return DataLocation(self.scheme, self.bucket, self.key + relative)


def policy_for(
    project_id: str, grants: Mapping[str, frozenset[str]], local_root: str | None
) -> DataPathPolicy:
    """The project's buckets: its own grants plus the ones granted to every project (``*``)."""
    return DataPathPolicy(grants.get(project_id, frozenset()) | grants.get("*", frozenset()), local_root)


def check_data_path(uri: str, policy: DataPathPolicy) -> DataLocation:
    """Check one user-supplied path; raises UrlRefused (with a stable code) before any I/O."""
    if uri[:7].lower() == "file://":
        return _check_local(uri, policy)
    checked = check_url(uri, UrlPolicy(schemes=frozenset({"s3"}), s3_buckets=policy.buckets), _no_dns)
    assert checked.bucket is not None and checked.key is not None
    return DataLocation("s3", checked.bucket, checked.key)


def _no_dns(host: str) -> list[str]:  # s3 URLs are never resolved
    raise OSError(f"no DNS for {host}")


def _check_local(uri: str, policy: DataPathPolicy) -> DataLocation:
    if policy.local_root is None:
        raise UrlRefused(RefusalCode.SCHEME, uri, "local files are not enabled by the operator")
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
        raise UrlRefused(RefusalCode.MALFORMED, uri, "a file URL is file:///absolute/path")
    raw = unquote(parts.path)
    if "\x00" in raw or any(seg in {".", ".."} for seg in raw.split("/")):
        raise UrlRefused(RefusalCode.PATH, uri, "the path has a '.' or '..' segment")
    root = PurePosixPath(posixpath.normpath(policy.local_root))
    path = PurePosixPath(raw)
    if not path.is_absolute() or not (path == root or root in path.parents):
        raise UrlRefused(RefusalCode.PATH, uri, f"local paths must be inside {root}")
    keep_slash = "/" if raw.endswith("/") and not str(path).endswith("/") else ""
    return DataLocation("file", "", str(path) + keep_slash)
