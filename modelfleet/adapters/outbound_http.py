"""Outbound HTTP to user-supplied URLs (webhooks, notification targets, batch sources), SSRF-safe.

Each hop is checked by :func:`modelfleet.core.url_guard.check_url` with ONE resolution, and the
socket is opened to an address that was checked: there is no second DNS lookup a rebinding server
could answer with ``127.0.0.1``. TLS still verifies the certificate against the hostname (SNI and
``Host`` carry the name, only the TCP connect uses the pinned IP). Redirects are followed by hand,
at most ``max_redirects``, each ``Location`` checked like the first URL; credentials are dropped
when a redirect leaves the origin. Bodies are read with a size cap and ``identity`` encoding (no
transparent decompression, so no gzip bomb), under per-operation and total time limits.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from modelfleet.core.url_guard import (
    CheckedUrl,
    RefusalCode,
    Resolver,
    UrlPolicy,
    UrlRefused,
    check_url,
    origin_of,
)

__all__ = [
    "FetchResponse",
    "OutboundError",
    "OutboundUnavailable",
    "ResponseTooLarge",
    "fetch",
    "system_resolve",
]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_CHUNK = 64 * 1024


class OutboundError(Exception):
    """An outbound request that did not complete (the URL itself was acceptable)."""


class OutboundUnavailable(OutboundError):
    """Connection refused, timed out, TLS failure or a broken response."""


class ResponseTooLarge(OutboundError):
    """The response body is larger than the caller's cap."""


@dataclass(frozen=True)
class FetchResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    url: str  # the final URL, after redirects
    redirects: tuple[str, ...] = ()  # every URL visited before ``url``


def system_resolve(host: str) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6), in the resolver's order."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def fetch(
    url: str,
    policy: UrlPolicy,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    resolve: Resolver = system_resolve,
    timeout: float = 10.0,
    max_bytes: int = 10 * 1024 * 1024,
    max_redirects: int = 5,
    tls_context: ssl.SSLContext | None = None,
) -> FetchResponse:
    """Request ``url`` if ``policy`` allows it and every redirect hop too.

    Raises UrlRefused (the URL or a redirect target is not allowed, or too many redirects),
    ResponseTooLarge, or OutboundUnavailable.
    """
    deadline = time.monotonic() + timeout
    context = tls_context or ssl.create_default_context()
    # ``Host`` always names the checked URL's host: a caller-set one could aim elsewhere.
    request_headers = {
        name.lower(): value for name, value in (headers or {}).items() if name.lower() != "host"
    }
    visited: list[str] = []
    current = url
    while True:
        checked = check_url(current, policy, resolve)
        if checked.scheme not in ("http", "https"):
            raise UrlRefused(RefusalCode.SCHEME, current, "only http(s) URLs can be fetched directly")
        status, response_headers, payload = _exchange(
            checked, method, body, request_headers, deadline, max_bytes, context
        )
        location = response_headers.get("location")
        if status not in REDIRECT_STATUSES or location is None:
            return FetchResponse(status, response_headers, payload, checked.url, tuple(visited))
        visited.append(checked.url)
        if len(visited) > max_redirects:
            raise UrlRefused(
                RefusalCode.TOO_MANY_REDIRECTS, url, f"more than {max_redirects} redirects (last: {location})"
            )
        next_url = urljoin(checked.url, location)
        if status == 303 or (status in (301, 302) and method not in ("GET", "HEAD")):
            method, body = "GET", None
            request_headers.pop("content-type", None)
        next_origin = _origin_or_none(next_url)
        if next_origin != checked.origin:
            for name in _CREDENTIAL_HEADERS:
                request_headers.pop(name, None)
        current = next_url


def _origin_or_none(url: str) -> str | None:
    """The origin of a redirect target, from its syntax (the next loop turn checks it fully)."""
    try:
        parts = urlsplit(url)
        return origin_of(parts.scheme.lower(), (parts.hostname or "").removesuffix("."), parts.port)
    except ValueError:
        return None


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to a pre-checked address; ``Host`` still carries the URL's name."""

    def __init__(self, host: str, port: int | None, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.pinned_address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.pinned_address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """TLS to a pre-checked address, verifying the certificate against the URL's hostname."""

    def __init__(
        self, host: str, port: int | None, address: str, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.pinned_address = address
        self.tls_context = context

    def connect(self) -> None:
        raw = socket.create_connection((self.pinned_address, self.port), self.timeout)
        self.sock = self.tls_context.wrap_socket(raw, server_hostname=self.host)


def _exchange(
    checked: CheckedUrl,
    method: str,
    body: bytes | None,
    headers: dict[str, str],
    deadline: float,
    max_bytes: int,
    context: ssl.SSLContext,
) -> tuple[int, dict[str, str], bytes]:
    last_error: Exception | None = None
    for address in checked.addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        conn: http.client.HTTPConnection
        if checked.scheme == "https":
            conn = _PinnedHTTPSConnection(checked.host, checked.port, address, remaining, context)
        else:
            conn = _PinnedHTTPConnection(checked.host, checked.port, address, remaining)
        try:
            try:
                conn.connect()
            except OSError as exc:  # this address is down: try the next checked one
                last_error = exc
                continue
            return _send(conn, checked, method, body, headers, deadline, max_bytes)
        finally:
            conn.close()
    reason = f"{last_error}" if last_error else "timed out"
    raise OutboundUnavailable(f"cannot reach {checked.origin}: {reason}")


def _send(
    conn: http.client.HTTPConnection,
    checked: CheckedUrl,
    method: str,
    body: bytes | None,
    headers: dict[str, str],
    deadline: float,
    max_bytes: int,
) -> tuple[int, dict[str, str], bytes]:
    sent = {"accept-encoding": "identity", "user-agent": "modelfleet-outbound/1", **headers}
    sent["connection"] = "close"
    try:
        conn.request(method, checked.target, body=body, headers=sent)
        response = conn.getresponse()
        response_headers = {name.lower(): value for name, value in response.getheaders()}
        declared = response_headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise ResponseTooLarge(f"{checked.url} declares {declared} bytes, the cap is {max_bytes}")
        chunks: list[bytes] = []
        size = 0
        while chunk := response.read(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise ResponseTooLarge(f"{checked.url} sent more than {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise OutboundUnavailable(f"{checked.url} did not finish in time")
            chunks.append(chunk)
        return response.status, response_headers, b"".join(chunks)
    except (OSError, http.client.HTTPException) as exc:
        raise OutboundUnavailable(f"request to {checked.url} failed: {exc}") from exc
