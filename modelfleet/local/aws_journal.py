"""A write journal for the local moto server, so its in-memory AWS survives restarts and `kill -9`.

`JournalingApp` wraps moto's WSGI app and appends every successful mutating request to a JSON-lines
`Journal` before answering; `replay` feeds the journal into a fresh moto app at start. Not journaled:
reads, SQS/SNS messages (queues come back empty) and item writes to ephemeral DynamoDB tables. An S3
multipart upload is journaled as one synthetic PUT of the assembled object. Records are
`{"m": method, "u": raw URI, "h": {header: value}, "b": base64 body}` (bodies over 64 KiB: `"blob"`,
a file `blobs/<sha256>`), plus `"x"` pinning ids moto generates at random (SNS subscription ARNs,
multipart ETags) to the acknowledged values on replay.

TODO(compaction): the journal only grows (a `/moto-api/reset` empties it). To compact it at start when
over ~64 MiB or 100k records: replay, then generate a minimal journal from moto's state (per table
CreateTable + UpdateTimeToLive + BatchWriteItem of a full Scan; CreateBucket + bucket config + one PUT
per object reusing blobs; CreateQueue with attributes/tags, DLQs first; CreateTopic + Subscribe with
"x" pins + SetSubscriptionAttributes), write it to a temp file, fsync, `os.replace`, drop unused blobs.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from modelfleet.local.aws_wsgi import (
    Headers,
    build_environ,
    call_app,
    raw_uri,
    read_body,
    request_headers,
    signing_service,
    undance,
)

log = logging.getLogger(__name__)

BLOB_THRESHOLD = 64 * 1024
READ_PREFIXES = ("Get", "List", "Describe", "Query", "Scan", "BatchGet", "TransactGet", "Receive", "Head")
TRANSIENT_OPS = frozenset(
    {
        "SendMessage", "SendMessageBatch", "ReceiveMessage", "DeleteMessage", "DeleteMessageBatch",
        "ChangeMessageVisibility", "ChangeMessageVisibilityBatch", "PurgeQueue", "Publish", "PublishBatch",
    }
)  # fmt: skip
DDB_ITEM_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
# Headers of a CreateMultipartUpload that must not be carried over to the synthetic PUT of the object.
_NOT_FOR_PUT = frozenset(
    {
        "content-length", "content-md5", "transfer-encoding", "expect", "x-amz-content-sha256",
        "x-amz-decoded-content-length", "x-amz-sdk-checksum-algorithm", "x-amz-checksum-algorithm",
        "x-amz-checksum-type",
    }
)  # fmt: skip
_SUBSCRIPTION_ARN = re.compile(r'SubscriptionArn(?:>|"\s*:\s*")([^<"]+)')
_UPLOAD_ID = re.compile(rb"<UploadId>([^<]+)</UploadId>")


class Kind(Enum):
    READ = "read"  # not journaled, no lock
    SKIP = "skip"  # mutating but not journaled (transient, ephemeral, multipart parts)
    JOURNAL = "journal"
    MPU_CREATE = "mpu-create"  # remember the headers for the synthetic PUT
    MPU_COMPLETE = "mpu-complete"  # journal a synthetic PUT of the assembled object
    MPU_ABORT = "mpu-abort"
    RESET = "reset"  # /moto-api/reset: state is empty again, so is the journal


def classify(environ: WSGIEnvironment, body: bytes, ephemeral_tables: frozenset[str]) -> tuple[Kind, str]:
    """Classify a request: what to do with it, and the operation name (method for REST)."""
    method = str(environ.get("REQUEST_METHOD", "GET")).upper()
    if str(environ.get("PATH_INFO", "")).startswith("/moto-api"):
        reset = method == "POST" and environ["PATH_INFO"].rstrip("/") == "/moto-api/reset"
        return (Kind.RESET if reset else Kind.READ), "moto-api"
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        op = str(target).rsplit(".", 1)[-1]
        return _classify_op(op, lambda: _json_object(body), ephemeral_tables), op
    if signing_service(environ) != "s3":
        action = _query_action(environ, method, body)
        if action:
            return _classify_op(action, dict, ephemeral_tables), action
    return _classify_rest(method, str(environ.get("QUERY_STRING", ""))), method


def _classify_op(op: str, payload: Callable[[], dict[str, Any]], ephemeral: frozenset[str]) -> Kind:
    if op in TRANSIENT_OPS:
        return Kind.SKIP
    if op.startswith(READ_PREFIXES):
        return Kind.READ
    if op in DDB_ITEM_WRITES and ephemeral:
        tables = _ddb_tables(op, payload())
        if tables and tables <= ephemeral:
            return Kind.SKIP
    return Kind.JOURNAL


def _ddb_tables(op: str, payload: dict[str, Any]) -> set[str]:
    if op == "BatchWriteItem":
        items = payload.get("RequestItems")
        names = list(items) if isinstance(items, dict) else []
    elif op == "TransactWriteItems":
        items = [it for it in payload.get("TransactItems") or [] if isinstance(it, dict)]
        names = [v.get("TableName", "") for it in items for v in it.values() if isinstance(v, dict)]
    else:
        names = [payload.get("TableName", "")]
    # A table may be named by its ARN: arn:aws:dynamodb:<region>:<account>:table/<name>
    return {str(n).rsplit(":table/", 1)[-1] for n in names}


def _classify_rest(method: str, query: str) -> Kind:
    if method in ("GET", "HEAD", "OPTIONS"):
        return Kind.READ
    params = parse_qs(query, keep_blank_values=True)
    if "uploadId" in params:  # UploadPart(Copy) / CompleteMultipartUpload / AbortMultipartUpload
        return {"POST": Kind.MPU_COMPLETE, "DELETE": Kind.MPU_ABORT}.get(method, Kind.SKIP)
    if method == "POST" and "uploads" in params:
        return Kind.MPU_CREATE
    if method == "POST" and "select" in params:  # SelectObjectContent
        return Kind.READ
    return Kind.JOURNAL  # PUT/POST/DELETE/PATCH, including POST ?delete (DeleteObjects)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _query_action(environ: WSGIEnvironment, method: str, body: bytes) -> str | None:
    params = parse_qs(str(environ.get("QUERY_STRING", "")))
    if method == "POST" and str(environ.get("CONTENT_TYPE", "")).startswith(
        "application/x-www-form-urlencoded"
    ):
        params.update(parse_qs(body.decode("utf-8", "replace")))
    actions = params.get("Action")
    return actions[0] if actions else None


def _ok(status: str) -> bool:
    return int(status.split(" ", 1)[0]) < 300


class Journal:
    """Append-only JSON-lines journal; each append is flushed (and fsynced if asked) before returning."""

    def __init__(self, path: Path, fsync: bool = False) -> None:
        self.path = Path(path)
        self.blob_dir = self.path.parent / "blobs"
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _repair_tail(self.path)
        self._fh = self.path.open("ab")
        self._lock = threading.Lock()

    def append(
        self, method: str, uri: str, headers: Headers, body: bytes, extra: dict[str, Any] | None = None
    ) -> None:
        record: dict[str, Any] = {"m": method, "u": uri, "h": headers}
        if len(body) > BLOB_THRESHOLD:
            record["blob"] = self._write_blob(body)
        else:
            record["b"] = base64.b64encode(body).decode("ascii")
        if extra:
            record["x"] = extra
        line = json.dumps(record, separators=(",", ":")).encode("utf-8") + b"\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())

    def _write_blob(self, body: bytes) -> str:
        digest = hashlib.sha256(body).hexdigest()
        target = self.blob_dir / digest
        if target.exists() and target.stat().st_size == len(body):
            return digest
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.blob_dir / f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp"
        with tmp.open("wb") as fh:
            fh.write(body)
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, target)  # a blob is never visible half-written
        if self.fsync:  # make the rename durable before the journal line that refers to it
            fd = os.open(self.blob_dir, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        return digest

    def truncate(self) -> None:
        """Forget everything (after a moto reset): empty the journal and drop the blobs."""
        with self._lock:
            self._fh.seek(0)
            self._fh.truncate()
            self._fh.flush()
            for blob in self.blob_dir.glob("*") if self.blob_dir.exists() else ():
                blob.unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def _repair_tail(path: Path) -> None:
    """Make the file end in a newline, so new records are never glued to a torn one."""
    size = path.stat().st_size if path.exists() else 0
    if size == 0:
        return
    with path.open("r+b") as fh:
        start = size
        while start > 0:  # scan back from the end for the last newline
            start = max(0, start - (1 << 20))
            fh.seek(start)
            if (newline := fh.read(size - start).rfind(b"\n")) >= 0:
                start += newline + 1
                break
        if start == size:
            return
        fh.seek(start)
        if _parse(fh.read()) is not None:  # a complete record, only its newline is missing
            fh.write(b"\n")
        else:
            log.warning("journal %s: dropping a torn last line (%d bytes)", path, size - start)
            fh.truncate(start)


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    ok = isinstance(record, dict) and {"m", "u", "h"} <= record.keys() and ("b" in record or "blob" in record)
    return record if ok else None


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds back new readers (no starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writer and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            self._cond.wait_for(lambda: not self._writer and not self._readers)
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class JournalingApp:
    """WSGI middleware around moto's app that journals every successful mutating request."""

    def __init__(
        self, app: WSGIApplication, journal: Journal, ephemeral_tables: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.journal = journal
        self.ephemeral_tables = ephemeral_tables
        self._lock = threading.Lock()  # apply + append of mutations, so journal order == apply order
        self._ddb = ReadWriteLock()  # DynamoDB reads never see half of a transaction
        self._uploads: dict[str, Headers] = {}  # multipart upload id -> CreateMultipartUpload headers

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = read_body(environ)
        environ["wsgi.input"] = io.BytesIO(body)
        kind, op = classify(environ, body, self.ephemeral_tables)
        if str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith("DynamoDB_"):
            # moto applies a TransactWriteItems item by item; DynamoDB isolates it from reads.
            lock = self._ddb.shared() if kind is Kind.READ else self._ddb.exclusive()
            with lock:
                return self._handle(environ, start_response, kind, op, body)
        return self._handle(environ, start_response, kind, op, body)

    def _handle(
        self, environ: WSGIEnvironment, start_response: StartResponse, kind: Kind, op: str, body: bytes
    ) -> Iterable[bytes]:
        if kind in (Kind.READ, Kind.SKIP):
            if "HTTP_X_AMZ_TARGET" not in environ:
                return self.app(environ, start_response)  # streamed (S3 downloads can be large)
            status, headers, out = call_app(self.app, environ)  # whole, inside the caller's lock
            start_response(status, headers)
            return [out]
        if kind in (Kind.MPU_CREATE, Kind.MPU_ABORT):
            status, headers, out = call_app(self.app, environ)
            self._track_upload(kind, environ, status, out)
        else:
            with self._lock:
                status, headers, out = call_app(self.app, environ)
                if _ok(status):
                    self._record(kind, op, environ, body, out)
        start_response(status, headers)
        return [out]

    def close(self) -> None:
        """Wait for an in-flight mutation, then close the journal (later mutations fail with a 500)."""
        with self._lock:
            self.journal.close()

    def _track_upload(self, kind: Kind, environ: WSGIEnvironment, status: str, out: bytes) -> None:
        if kind is Kind.MPU_ABORT:
            upload_id = parse_qs(str(environ.get("QUERY_STRING", ""))).get("uploadId", [""])[0]
            self._uploads.pop(upload_id, None)
        elif _ok(status) and (match := _UPLOAD_ID.search(out)):
            self._uploads[match.group(1).decode()] = request_headers(environ)

    def _record(self, kind: Kind, op: str, environ: WSGIEnvironment, body: bytes, out: bytes) -> None:
        if kind is Kind.RESET:
            self.journal.truncate()
            self._uploads.clear()
            return
        uri, headers = raw_uri(environ), request_headers(environ)
        if kind is Kind.MPU_COMPLETE:
            self._record_multipart(environ, uri, headers, out)
            return
        extra = None
        if op == "Subscribe" and (match := _SUBSCRIPTION_ARN.search(out.decode("utf-8", "replace"))):
            extra = {"sub": match.group(1)}
        self.journal.append(str(environ["REQUEST_METHOD"]), uri, headers, body, extra)

    def _record_multipart(self, environ: WSGIEnvironment, uri: str, headers: Headers, out: bytes) -> None:
        if b"<Error>" in out:  # S3 may report a failed completion with a 200
            return
        upload_id = parse_qs(str(environ.get("QUERY_STRING", ""))).get("uploadId", [""])[0]
        path = uri.split("?", 1)[0]
        auth_names = ("host", "authorization", "x-amz-date", "x-amz-security-token")
        auth = {k: v for k, v in headers.items() if k.lower() in auth_names}
        status, got_headers, data = call_app(self.app, build_environ("GET", path, auth, b""))
        if not _ok(status):
            log.error("multipart %s completed but could not be read back (%s): not journaled", path, status)
            return
        got = {k.lower(): v for k, v in got_headers}
        base = self._uploads.pop(upload_id, None)
        if base is None:
            base = {
                k: v
                for k, v in got_headers
                if k.lower() == "content-type" or k.lower().startswith("x-amz-meta-")
            }
        put = {
            k: v
            for k, v in base.items()
            if k.lower() not in _NOT_FOR_PUT and not k.lower().startswith("x-amz-checksum-")
        }
        put.update(auth)
        put.update({"Content-Length": str(len(data)), "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"})
        bucket, key = _bucket_and_key(auth.get("Host", ""), undance(str(environ.get("PATH_INFO", ""))))
        self.journal.append(
            "PUT", path, put, data, {"etag": got.get("etag", ""), "bucket": bucket, "key": key}
        )


def _bucket_and_key(host: str, path: str) -> tuple[str, str]:
    hostname = host if host.endswith("]") else host.rsplit(":", 1)[0]
    if re.fullmatch(r"[\d.]*|\[.*|localhost|s3[.-].*", hostname):  # path-style addressing
        bucket, _, key = path.lstrip("/").partition("/")
        return bucket, key
    return hostname.split(".", 1)[0], path.lstrip("/")


def replay(app: WSGIApplication, journal_path: Path) -> int:
    """Feed every journal record to `app`; return how many were replayed. Failures are logged."""
    path = Path(journal_path)
    if not path.exists():
        return 0
    count = 0
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            record = _parse(line)
            if record is None:
                if line.endswith(b"\n"):
                    log.error("journal %s:%d: unreadable record skipped", path, lineno)
                else:
                    log.warning("journal %s:%d: torn last line skipped", path, lineno)
                continue
            body = _record_body(record, path.parent / "blobs", lineno)
            if body is None:
                continue
            status, _, out = call_app(app, build_environ(record["m"], record["u"], record["h"], body))
            count += 1
            if not _ok(status):
                log.warning(
                    "journal %s:%d: %s %s replayed as %s", path, lineno, record["m"], record["u"], status
                )
            elif record.get("x"):
                _apply_pins(record["x"], out)
    if count:
        _drop_replayed_messages()
    return count


def _record_body(record: dict[str, Any], blob_dir: Path, lineno: int) -> bytes | None:
    try:
        if "blob" in record:
            return (blob_dir / str(record["blob"])).read_bytes()
        return base64.b64decode(record["b"], validate=True)
    except (OSError, ValueError) as exc:  # binascii.Error is a ValueError
        log.error("journal record %d: body unavailable (%s): skipped", lineno, exc)
        return None


def _apply_pins(pins: dict[str, Any], out: bytes) -> None:
    """Give ids moto generated at random during replay their original, acknowledged values."""
    try:
        if "sub" in pins:
            match = _SUBSCRIPTION_ARN.search(out.decode("utf-8", "replace"))
            if match and match.group(1) != pins["sub"]:
                from moto.sns.models import sns_backends

                new, old = match.group(1), str(pins["sub"])
                backend = sns_backends[new.split(":")[4]][new.split(":")[3]]
                subscription = backend.subscriptions.pop(new)
                subscription.arn = old
                subscription.attributes["SubscriptionArn"] = old
                backend.subscriptions[old] = subscription
        if pins.get("etag"):
            from moto.s3.models import s3_backends

            partition, account = s3_backends.bucket_accounts[pins["bucket"]]
            key = s3_backends[account][partition].get_object(pins["bucket"], pins["key"])
            if key is not None:
                key._etag = str(pins["etag"]).strip('"')
    except Exception:  # best effort: the state itself is replayed, only an id differs
        log.warning("journal: could not restore pinned ids %s", pins, exc_info=True)


def _drop_replayed_messages() -> None:
    """Messages are never journaled, so any queued now were sent by replay side effects (S3 events...)."""
    if "moto.sqs.models" not in sys.modules:
        return
    from moto.sqs.models import sqs_backends

    for account in list(sqs_backends):
        for region in list(sqs_backends[account]):
            for queue in sqs_backends[account][region].queues.values():
                queue._messages = []
                queue._pending_messages = set()
