"""Manifest files (``src_type: ManifestFile``): the list of a job's data objects.

Format: UTF-8 JSON lines, one object per line, each with a ``source`` key naming one data object
as an S3 URI (``s3://bucket/key``); blank lines are skipped; other keys are kept verbatim with the
object (for example ``"usage"`` or ``"id"``) and ignored by the engine::

    {"source": "s3://my-data/images/0001.npy"}
    {"source": "s3://my-data/images/0002.npy", "id": "b"}

Every source goes through the same path check as ``src_path`` (granted buckets only). A manifest
that is empty, is not JSON lines, has a line without a string ``source``, names a refused path or
names one object twice fails the job, with the line number in the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from modelfleet.batch.paths import DataLocation, DataPathPolicy, check_data_path
from modelfleet.core.url_guard import UrlRefused

__all__ = ["MAX_MANIFEST_ENTRIES", "ManifestEntry", "ManifestError", "parse_manifest"]

MAX_MANIFEST_ENTRIES = 1_000_000


class ManifestError(ValueError):
    """The manifest is unusable; the job fails with this reason."""


@dataclass(frozen=True)
class ManifestEntry:
    line: int
    location: DataLocation
    extra: dict[str, Any]


def parse_manifest(data: bytes, policy: DataPathPolicy) -> list[ManifestEntry]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(f"the manifest is not UTF-8 text ({e.reason} at byte {e.start})") from None
    entries: list[ManifestEntry] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ManifestError(f"line {number} is not a JSON object") from None
        if not isinstance(item, dict):
            raise ManifestError(f"line {number} is not a JSON object")
        source = item.get("source")
        if not isinstance(source, str) or not source:
            raise ManifestError(f"line {number} has no 'source' string")
        try:
            location = check_data_path(source, policy)
        except UrlRefused as e:
            raise ManifestError(f"line {number}: {e}") from None
        if not location.key or location.key.endswith("/"):
            raise ManifestError(f"line {number}: 'source' must name one object, not a prefix")
        if location.uri in seen:
            raise ManifestError(f"line {number}: {location.uri} is listed twice")
        seen.add(location.uri)
        entries.append(ManifestEntry(number, location, {k: v for k, v in item.items() if k != "source"}))
        if len(entries) > MAX_MANIFEST_ENTRIES:
            raise ManifestError(f"more than {MAX_MANIFEST_ENTRIES} entries")
    if not entries:
        raise ManifestError("the manifest lists no data objects")
    return entries
