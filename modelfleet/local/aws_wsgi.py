"""WSGI plumbing for the journaled moto server: reading requests as received, and building
environs to replay them exactly as werkzeug's server (with moto's request handler) would."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, unquote, urlsplit
from wsgiref.types import WSGIApplication, WSGIEnvironment

from moto.core import request as moto_request

Headers = dict[str, str]
_SIGNING_SERVICE = re.compile(r"Credential=[^/&,\s]+/\d{8}/[^/&]+/([^/&]+)/aws4_request")
Response = tuple[str, list[tuple[str, str]], bytes]


def read_body(environ: WSGIEnvironment) -> bytes:
    """The whole request body: to EOF for chunked input, else CONTENT_LENGTH bytes."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    if environ.get("wsgi.input_terminated"):
        return bytes(stream.read())
    length = str(environ.get("CONTENT_LENGTH") or "0")
    return bytes(stream.read(int(length))) if length.isdigit() and int(length) > 0 else b""


def signing_service(environ: WSGIEnvironment) -> str | None:
    """The AWS service a request is signed for (SigV4 header or presigned query), if any."""
    text = f"{environ.get('HTTP_AUTHORIZATION', '')} {unquote(str(environ.get('QUERY_STRING', '')))}"
    match = _SIGNING_SERVICE.search(text)
    return match.group(1).lower() if match else None


def request_headers(environ: WSGIEnvironment) -> Headers:
    """All request headers of a WSGI environ, keeping moto's preserved spellings (x-amz-meta-a_b)."""
    preserved: dict[str, str] = environ.get(moto_request.PRESERVED_HEADER_NAMES_ENVIRON_KEY) or {}
    headers: Headers = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = preserved.get(key) or key[5:].replace("_", "-").title()
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key.replace("_", "-").title()
        else:
            continue
        if isinstance(value, str):
            headers[name] = value
    return headers


def raw_uri(environ: WSGIEnvironment) -> str:
    """The request target exactly as received (percent-encoding intact)."""
    uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not uri:  # not werkzeug's server: re-encode the decoded path
        uri = quote(environ.get("PATH_INFO", "").encode("latin-1"), safe="/;=,~!$&'()*+:@")
        uri += f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else ""
    return str(uri)


def _dance(text: str) -> str:  # PEP 3333 "bytes as latin-1" strings, as werkzeug's server builds them
    return text.encode("utf-8").decode("latin-1")


def undance(text: str) -> str:
    return text.encode("latin-1").decode("utf-8", "replace")


def build_environ(method: str, uri: str, headers: Headers, body: bytes) -> WSGIEnvironment:
    """A WSGI environ as werkzeug's dev server (with moto's request handler) would build it."""
    parts = urlsplit(undance(uri))
    path = f"/{parts.netloc}{parts.path}" if parts.netloc and not parts.scheme else parts.path
    host = next((v for k, v in headers.items() if k.lower() == "host"), "127.0.0.1")
    name, _, port = host.rpartition(":") if not host.endswith("]") and ":" in host else (host, "", "80")
    environ: WSGIEnvironment = {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": _dance(unquote(path)),
        "QUERY_STRING": _dance(parts.query),
        "REQUEST_URI": uri,
        "RAW_URI": uri,
        "REMOTE_ADDR": "127.0.0.1",
        "SERVER_NAME": name,
        "SERVER_PORT": port,
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    preserved: dict[str, str] = {}
    for header, value in headers.items():
        if header.lower() in ("content-length", "transfer-encoding"):
            continue  # the body is stored de-chunked
        key = moto_request.environ_key_for_header(header)
        environ[key] = value
        if moto_request.should_preserve_original_header_name(header):
            preserved[key] = header
    environ["CONTENT_LENGTH"] = str(len(body))
    environ[moto_request.PRESERVED_HEADER_NAMES_ENVIRON_KEY] = preserved
    return environ


def call_app(app: WSGIApplication, environ: WSGIEnvironment) -> Response:
    """Run a WSGI app to completion: (status, headers, body)."""
    chunks: list[bytes] = []
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        started.append((status, headers))
        return chunks.append

    result: Iterable[bytes] = app(environ, start_response)
    try:
        chunks.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = started[-1] if started else ("500 INTERNAL SERVER ERROR", [])
    return status, headers, b"".join(chunks)
