"""Ranged S3 reads that cost the range, not the object, on the local stand-in.

moto answers ``GET`` with ``Range: bytes=a-b`` by reading the whole object out of its buffer and
slicing it, so a ranged read costs the object's size: ~15 ms for a 24 MB CSV and ~1 s for a 1 GB
one. A batch job reads its CSV in ranges (the planner in pieces, each task its chunk), which made
the local platform quadratic in the file's size.

`RangedReads` wraps moto's WSGI app. For the plain form only (a path-style ``GET`` of an object,
one ``bytes=a-b`` range, a part of the object, no query parameters, no conditional or SSE-C
headers) it asks moto for the object's headers with a ``HEAD`` (so status codes, errors, ETag,
metadata and content type stay moto's) and reads just the range from moto's buffer. Every other
request, and any request whose object changed under it, goes to moto unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from modelfleet.local.aws_wsgi import call_app, signing_service, undance

__all__ = ["RangedReads"]

_PLAIN_QUERIES = ("", "x-id=GetObject")  # botocore names the operation in the query
_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")
# Request headers that change what a GET answers: those go to moto.
_MOTO_ONLY = ("HTTP_IF_", "HTTP_X_AMZ_SERVER_SIDE_ENCRYPTION_CUSTOMER")


class RangedReads:
    def __init__(self, app: WSGIApplication, account_id: str | None = None) -> None:
        self.app = app
        self._account_id = account_id

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        target = self._plain_ranged_get(environ)
        if target is not None:
            answer = self._answer(environ, *target)
            if answer is not None:
                status, headers, body = answer
                start_response(status, headers)
                return [body]
        return self.app(environ, start_response)

    def _plain_ranged_get(self, environ: WSGIEnvironment) -> tuple[str, str, int, int] | None:
        """(bucket, key, first byte, last byte) of a request this module answers, else None."""
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING", "") not in _PLAIN_QUERIES:
            return None
        match = _RANGE.match(str(environ.get("HTTP_RANGE", "")).strip())
        if match is None or any(str(k).startswith(_MOTO_ONLY) for k in environ):
            return None
        if signing_service(environ) not in ("s3", None):
            return None
        bucket, _, key = undance(str(environ.get("PATH_INFO", ""))).lstrip("/").partition("/")
        first, last = int(match.group(1)), int(match.group(2))
        if not bucket or not key or first > last:
            return None
        return bucket, key, first, last

    def _answer(
        self, environ: WSGIEnvironment, bucket: str, key: str, first: int, last: int
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        found = self._key(bucket, key)
        if found is None or first >= found.size or (first == 0 and last >= found.size - 1):
            return None  # moto's answer: its error document, 416 past the end, the whole object
        head = {k: v for k, v in environ.items() if k != "HTTP_RANGE"}
        head["REQUEST_METHOD"] = "HEAD"
        status, headers, _ = call_app(self.app, head)
        if not status.startswith("200"):
            return None  # moto's own GET answers (its error document, 304, ...)
        size = found.size
        last = min(last, size - 1)
        with found.lock:
            found._value_buffer.seek(first)
            data = found._value_buffer.read(last - first + 1)
        if self._key(bucket, key) is not found:
            return None  # overwritten meanwhile: moto answers from the new object
        kept = [
            (k, v)
            for k, v in headers
            if k.lower() not in ("content-length", "content-range")
            and not k.lower().startswith("x-amz-checksum-")
        ]
        kept += [("Content-Range", f"bytes {first}-{last}/{size}"), ("Content-Length", str(len(data)))]
        return "206 Partial Content", kept, data

    def _key(self, bucket: str, key: str) -> Any:
        """moto's current object, or None (no such bucket or key, a delete marker, ...)."""
        try:
            from moto.core.models import DEFAULT_ACCOUNT_ID
            from moto.s3.models import s3_backends

            backend = s3_backends[self._account_id or DEFAULT_ACCOUNT_ID]["aws"]
            found = backend.get_object(bucket, key)
        except Exception:
            return None
        if found is None or not hasattr(found, "_value_buffer") or not hasattr(found, "lock"):
            return None
        return found
