"""Ranged S3 reads on the stand-in: answered from the range (moto sees only a HEAD), with the bytes
and headers moto itself would answer; every other form of GET is moto's own answer."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import boto3
import pytest
from botocore.exceptions import ClientError
from werkzeug.serving import BaseWSGIServer, make_server

from modelfleet.local.aws_ranged_reads import RangedReads
from modelfleet.local.aws_server import moto_app, quiet_request_handler

make_client: Any = boto3.client
SIZE = 1_000_003
BUCKET = "ranged"


@dataclass
class Seen:
    """What reaches moto (a recording wrapper around its app)."""

    app: WSGIApplication
    methods: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.methods.append((str(environ["REQUEST_METHOD"]), str(environ.get("HTTP_RANGE", ""))))
        return self.app(environ, start_response)


@dataclass
class Servers:
    fast: Any  # an S3 client through RangedReads
    moto: Any  # an S3 client straight to moto (the same backend)
    seen: Seen
    data: bytes


def _serve(app: WSGIApplication) -> BaseWSGIServer:
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=quiet_request_handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    seen = Seen(moto_app())
    fast, plain = _serve(RangedReads(seen)), _serve(seen)
    try:
        clients = [
            make_client(
                "s3",
                endpoint_url=f"http://127.0.0.1:{s.server_address[1]}",
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            for s in (fast, plain)
        ]
        data = os.urandom(SIZE)
        clients[1].create_bucket(Bucket=BUCKET)
        clients[1].put_object(
            Bucket=BUCKET, Key="dir/obj ü.bin", Body=data, ContentType="text/csv", Metadata={"origin": "test"}
        )
        yield Servers(clients[0], clients[1], seen, data)
    finally:
        for s in (fast, plain):
            s.shutdown()
            s.server_close()


def _get(client: Any, key: str = "dir/obj ü.bin", **kwargs: Any) -> dict[str, Any]:
    try:
        got = client.get_object(Bucket=BUCKET, Key=key, **kwargs)
    except ClientError as e:
        return {
            "error": e.response["Error"]["Code"],
            "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
        }
    fields = (
        "ContentRange",
        "ContentLength",
        "ETag",
        "ContentType",
        "Metadata",
        "AcceptRanges",
        "ChecksumCRC32",
    )
    return {"body": got["Body"].read(), **{f: got[f] for f in fields if f in got}}


@pytest.mark.parametrize(
    "first,last",
    [(0, 0), (0, 99), (5, 5), (4096, 700_000), (100, 10**12), (SIZE - 1, SIZE - 1)],
)
def test_a_range_is_read_alone_and_answered_as_moto_answers_it(
    servers: Servers, first: int, last: int
) -> None:
    expected = _get(servers.moto, Range=f"bytes={first}-{last}")
    servers.seen.methods.clear()
    got = _get(servers.fast, Range=f"bytes={first}-{last}")
    assert got == expected
    assert got["body"] == servers.data[first : last + 1]
    assert "ChecksumCRC32" not in got  # only the whole object has the whole object's checksum
    assert servers.seen.methods == [("HEAD", "")]  # moto never read the object


@pytest.mark.parametrize(
    "kwargs",
    [
        {"Range": "bytes=-10"},  # a suffix
        {"Range": "bytes=10-"},  # open-ended
        {"Range": f"bytes={SIZE}-{SIZE + 5}"},  # starts past the end: 416
        {"Range": "bytes=9-3"},
        {"Range": f"bytes=0-{SIZE - 1}"},  # the whole object (with its checksum)
        {"Range": "bytes=0-99999999"},
        {"Range": "bytes=0-9", "IfMatch": '"not-the-etag"'},  # 412
        {"Range": "bytes=0-9", "VersionId": "null"},
        {},
    ],
)
def test_other_gets_are_moto_s_own_answer(servers: Servers, kwargs: dict[str, Any]) -> None:
    servers.seen.methods.clear()
    got = _get(servers.fast, **kwargs)
    assert [m for m, _ in servers.seen.methods] == ["GET"]
    assert got == _get(servers.moto, **kwargs)


def test_a_missing_key_or_bucket_is_moto_s_error(servers: Servers) -> None:
    assert _get(servers.fast, key="nope", Range="bytes=0-9") == {"error": "NoSuchKey", "status": 404}
    try:
        servers.fast.get_object(Bucket="no-such-bucket", Key="k", Range="bytes=0-9")
    except ClientError as e:
        assert e.response["Error"]["Code"] == "NoSuchBucket"
    else:
        pytest.fail("a missing bucket answered")
