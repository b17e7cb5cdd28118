"""Outbound URL guard: decide whether a user-supplied URL may be fetched, before any I/O.

Every URL a user can hand the platform (batch ``src_path``/``dest_path``, notification targets,
webhooks) goes through :func:`check_url` first. It is pure: DNS is injected as ``resolve`` so the
decision is testable and the caller connects to exactly the addresses that were checked (resolving
again later would let a rebinding DNS server swap in ``127.0.0.1``).

Refused, each with a stable :class:`RefusalCode`:

* schemes outside the policy (``file``, ``gopher``, ``ftp``, ``data``, ``dict``, ...);
* userinfo (``https://good.com@evil.com/``), backslashes, control characters, non-ASCII hosts
  (IDNA maps fullwidth digits to ``127.0.0.1``), IPv6 zone ids;
* numeric host spellings that are not a canonical dotted quad: ``2130706433``, ``0x7f.1``,
  ``0177.0.0.1``, ``127.1`` (libc's ``inet_aton`` and browsers read them all as ``127.0.0.1``);
* ``localhost``/``*.localhost`` and cloud metadata hostnames;
* any address (literal or ANY of the resolved ones) that is not plainly public: loopback, RFC 1918,
  ULA, link-local (``169.254.169.254`` metadata, ``fe80::/10``), CGNAT, multicast, reserved,
  unspecified, documentation, and IPv6 forms that embed an IPv4 address (mapped, compatible,
  NAT64, 6to4, Teredo) because they can reach IPv4 space the check would not see;
* hosts outside ``host_suffixes`` and S3 buckets outside ``s3_buckets`` when the policy lists them.

``trusted_origins`` exempts exact origins (``"http://127.0.0.1:4566"``, the local AWS stand-in)
from the address checks only; scheme and syntax rules still apply to them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "DEFAULT_PORTS",
    "CheckedUrl",
    "RefusalCode",
    "Resolver",
    "UrlPolicy",
    "UrlRefused",
    "address_refusal",
    "check_url",
    "origin_of",
]

Resolver = Callable[[str], list[str]]
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS: dict[str, int] = {"http": 80, "https": 443}
MAX_URL_LENGTH = 4096


class RefusalCode(StrEnum):
    MALFORMED = "malformed_url"
    SCHEME = "scheme_not_allowed"
    USERINFO = "userinfo_not_allowed"
    NUMERIC_HOST = "ambiguous_numeric_host"
    LOCAL_HOST = "local_hostname"
    METADATA_HOST = "metadata_hostname"
    BLOCKED_ADDRESS = "blocked_address"
    UNRESOLVABLE = "unresolvable_host"
    HOST_NOT_ALLOWED = "host_not_allowed"
    BUCKET_NOT_ALLOWED = "bucket_not_allowed"
    PORT_NOT_ALLOWED = "port_not_allowed"
    PATH = "path_not_allowed"
    TOO_MANY_REDIRECTS = "too_many_redirects"


class UrlRefused(ValueError):
    """A URL the policy refuses; ``code`` is stable, the message says why in words."""

    def __init__(self, code: RefusalCode, url: str, reason: str) -> None:
        shown = url if len(url) <= 200 else url[:200] + "..."
        super().__init__(f"URL {shown!r} refused ({code.value}): {reason}")
        self.code = code
        self.url = url
        self.reason = reason


@dataclass(frozen=True)
class UrlPolicy:
    """What outbound URLs may point at.

    ``host_suffixes`` None means any public host; otherwise the host must equal a suffix or end
    with ``"." + suffix``. ``s3_buckets`` lists the buckets ``s3://`` URLs may name (empty: none).
    ``ports`` None means any port.
    """

    schemes: frozenset[str] = frozenset({"https", "s3"})
    s3_buckets: frozenset[str] = frozenset()
    host_suffixes: frozenset[str] | None = None
    ports: frozenset[int] | None = None
    trusted_origins: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class CheckedUrl:
    """A URL that passed the guard; ``addresses`` are the checked IPs to connect to (none for s3)."""

    url: str
    scheme: str
    host: str
    port: int | None
    target: str  # path + query, what goes on the request line
    addresses: tuple[str, ...] = ()
    bucket: str | None = None
    key: str | None = None

    @property
    def origin(self) -> str:
        return origin_of(self.scheme, self.host, self.port)


def origin_of(scheme: str, host: str, port: int | None) -> str:
    shown_host = f"[{host}]" if ":" in host else host
    effective = port if port is not None else DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{shown_host}" + (f":{effective}" if effective is not None else "")


# Cloud metadata endpoints by name (their addresses are link-local or private and refused anyway).
METADATA_HOSTNAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
        "metadata.platformequinix.com",
        "kubernetes.default",
        "kubernetes.default.svc",
    }
)

# Explicit tables: Python's is_global/is_private tables changed between patch releases
# (CVE-2024-4032), so the guard does not depend on them alone.
_BLOCKED_V4: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("10.0.0.0/8", "a private (RFC 1918) address"),
    ("172.16.0.0/12", "a private (RFC 1918) address"),
    ("192.168.0.0/16", "a private (RFC 1918) address"),
    ("100.64.0.0/10", "a carrier-grade NAT (RFC 6598) address"),
    ("192.0.0.0/24", "an IETF protocol assignment address"),
    ("192.0.2.0/24", "a documentation address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay anycast address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
)
_BLOCKED_V6: tuple[tuple[str, str], ...] = (
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("::ffff:0:0/96", "an IPv4-mapped address"),
    ("::/96", "an IPv4-compatible address"),
    ("64:ff9b::/96", "a NAT64 address embedding IPv4"),
    ("64:ff9b:1::/48", "a NAT64 address embedding IPv4"),
    ("100::/64", "a discard-only address"),
    ("2001::/32", "a Teredo address embedding IPv4"),
    ("2001:db8::/32", "a documentation address"),
    ("2002::/16", "a 6to4 address embedding IPv4"),
    ("fc00::/7", "a unique local (private) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)
_V4_NETWORKS = tuple((ipaddress.IPv4Network(net), why) for net, why in _BLOCKED_V4)
_V6_NETWORKS = tuple((ipaddress.IPv6Network(net), why) for net, why in _BLOCKED_V6)
_METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)

_BAD_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")
_HOST_LABELS = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def address_refusal(address: IpAddress) -> str | None:
    """Why ``address`` must not be contacted, or None for a plainly public unicast address."""
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv4Address):
        for net4, why in _V4_NETWORKS:
            if address in net4:
                return why
    else:
        for net6, why in _V6_NETWORKS:
            if address in net6:
                return why
    if not address.is_global or address.is_multicast or address.is_reserved:
        return "not a globally routable unicast address"
    return None


def check_url(url: str, policy: UrlPolicy, resolve: Resolver) -> CheckedUrl:
    """Check ``url`` against ``policy``; raises UrlRefused, or returns what to connect to."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(RefusalCode.MALFORMED, url, f"longer than {MAX_URL_LENGTH} characters")
    if _BAD_CHARACTERS.search(url):
        raise UrlRefused(RefusalCode.MALFORMED, url, "it contains whitespace, a control character or '\\'")
    if not url.isascii():
        raise UrlRefused(RefusalCode.MALFORMED, url, "it contains non-ASCII characters (use punycode)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(RefusalCode.MALFORMED, url, str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in policy.schemes:
        allowed = ", ".join(sorted(policy.schemes)) or "none"
        raise UrlRefused(RefusalCode.SCHEME, url, f"scheme {scheme or '(none)'!r} is not one of: {allowed}")
    if "@" in parts.netloc:
        raise UrlRefused(RefusalCode.USERINFO, url, "credentials or '@' in the authority are not allowed")
    if scheme == "s3":
        return _check_s3(url, parts, policy)
    if scheme not in DEFAULT_PORTS:
        raise UrlRefused(RefusalCode.SCHEME, url, f"scheme {scheme!r} has no network rules here")
    host = _host_of(url, parts)
    if policy.ports is not None and (port or DEFAULT_PORTS[scheme]) not in policy.ports:
        raise UrlRefused(RefusalCode.PORT_NOT_ALLOWED, url, f"port {port} is not allowed")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    shown_host = f"[{host}]" if ":" in host else host
    normalized = f"{scheme}://{shown_host}" + (f":{port}" if port is not None else "") + target
    trusted = origin_of(scheme, host, port) in {_normalized_origin(o) for o in policy.trusted_origins}
    addresses = _checked_addresses(url, host, policy, resolve, trusted)
    return CheckedUrl(url=normalized, scheme=scheme, host=host, port=port, target=target, addresses=addresses)


def _normalized_origin(text: str) -> str:
    """``http://127.0.0.1:80``, ``http://127.0.0.1`` and ``HTTP://127.0.0.1/`` are one origin."""
    try:
        parts = urlsplit(text)
        return origin_of(parts.scheme.lower(), (parts.hostname or "").removesuffix("."), parts.port)
    except ValueError:
        return text


def _check_s3(url: str, parts: SplitResult, policy: UrlPolicy) -> CheckedUrl:
    bucket = parts.netloc
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise UrlRefused(RefusalCode.MALFORMED, url, f"{bucket!r} is not a valid bucket name")
    if bucket not in policy.s3_buckets:
        raise UrlRefused(RefusalCode.BUCKET_NOT_ALLOWED, url, f"bucket {bucket!r} is not allowed")
    if parts.query or parts.fragment:
        raise UrlRefused(RefusalCode.MALFORMED, url, "s3 URLs take no query or fragment")
    key = parts.path.removeprefix("/")
    if any(segment in {".", ".."} for segment in key.split("/")):
        raise UrlRefused(RefusalCode.PATH, url, "the key has a '.' or '..' segment")
    return CheckedUrl(
        url=f"s3://{bucket}/{key}",
        scheme="s3",
        host=bucket,
        port=None,
        target="/" + key,
        bucket=bucket,
        key=key,
    )


def _host_of(url: str, parts: SplitResult) -> str:
    raw = parts.hostname
    if not raw:
        raise UrlRefused(RefusalCode.MALFORMED, url, "it has no host")
    if parts.netloc.startswith("[") or ":" in raw:
        if "%" in raw:
            raise UrlRefused(RefusalCode.MALFORMED, url, "IPv6 zone ids are not allowed")
        try:
            return str(ipaddress.IPv6Address(raw))
        except ValueError:
            raise UrlRefused(RefusalCode.MALFORMED, url, f"{raw!r} is not an IPv6 address") from None
    host = raw.removesuffix(".")
    labels = host.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        # A numeric last label makes resolvers and browsers parse the whole host as IPv4.
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            meaning = _inet_aton(host)
            extra = f" (read as {meaning} by inet_aton)" if meaning else ""
            raise UrlRefused(
                RefusalCode.NUMERIC_HOST, url, f"{raw!r} is not a canonical dotted-quad address{extra}"
            ) from None
    if not all(_HOST_LABELS.match(label) for label in labels) or len(host) > 253:
        raise UrlRefused(RefusalCode.MALFORMED, url, f"{raw!r} is not a valid hostname")
    return host


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The address libc's inet_aton reads from a 1-4 part decimal/octal/hex spelling, if any."""
    parts = host.split(".")
    if len(parts) > 4:
        return None
    values: list[int] = []
    for part in parts:
        try:
            if part.startswith("0x"):
                values.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            else:
                values.append(int(part, 10))
        except ValueError:
            return None
    *head, last = values
    if any(value > 255 for value in head) or last >= 256 ** (5 - len(values)):
        return None
    number = 0
    for value in head:
        number = number << 8 | value
    number = number << (8 * (5 - len(values))) | last
    return ipaddress.IPv4Address(number)


def _host_refusal(host: str, policy: UrlPolicy) -> tuple[RefusalCode, str] | None:
    if host == "localhost" or host.endswith(".localhost"):
        return RefusalCode.LOCAL_HOST, f"{host!r} names this machine"
    if host in METADATA_HOSTNAMES or any(host.endswith("." + name) for name in METADATA_HOSTNAMES):
        return RefusalCode.METADATA_HOST, f"{host!r} is a cloud metadata hostname"
    if policy.host_suffixes is not None and not any(
        host == suffix or host.endswith("." + suffix) for suffix in policy.host_suffixes
    ):
        return RefusalCode.HOST_NOT_ALLOWED, f"host {host!r} is not under an allowed domain"
    return None


def _checked_addresses(
    url: str, host: str, policy: UrlPolicy, resolve: Resolver, trusted: bool
) -> tuple[str, ...]:
    literal = _as_address(host)
    if literal is None:
        refusal = _host_refusal(host, policy)
        if refusal is not None and not trusted:
            raise UrlRefused(refusal[0], url, refusal[1])
        try:
            resolved = list(resolve(host))
        except OSError as exc:
            raise UrlRefused(RefusalCode.UNRESOLVABLE, url, f"{host!r} does not resolve: {exc}") from None
        if not resolved:
            raise UrlRefused(RefusalCode.UNRESOLVABLE, url, f"{host!r} resolves to no address")
    else:
        if policy.host_suffixes is not None and not trusted:
            raise UrlRefused(RefusalCode.HOST_NOT_ALLOWED, url, "IP literals are not under an allowed domain")
        resolved = [host]
    addresses: list[str] = []
    for text in resolved:
        address = _as_address(text)
        if address is None:
            raise UrlRefused(
                RefusalCode.UNRESOLVABLE, url, f"{host!r} resolved to {text!r}, not an IP address"
            )
        why = None if trusted else address_refusal(address)
        if why is not None:
            shown = f"{host!r}" if literal is not None else f"{host!r} resolves to {address}, which"
            raise UrlRefused(RefusalCode.BLOCKED_ADDRESS, url, f"{shown} is {why}")
        addresses.append(str(address))
    return tuple(dict.fromkeys(addresses))


def _as_address(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
