"""Fault-suite row 9: SSRF payloads. The pure guard (properties over whole networks and every
spelling), then real HTTP through ``outbound_http.fetch`` against local servers: a redirect to
loopback is refused, and the internal server never sees a request."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.adapters.outbound_http import ResponseTooLarge, fetch
from modelfleet.core.url_guard import RefusalCode, UrlPolicy, UrlRefused, address_refusal, check_url

PUBLIC = "93.184.216.34"
POLICY = UrlPolicy(schemes=frozenset({"http", "https", "s3"}), s3_buckets=frozenset({"models"}))


def resolver(table: dict[str, list[str]]) -> Callable[[str], list[str]]:
    def resolve(host: str) -> list[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]

    return resolve


PUBLIC_DNS = resolver({"example.com": [PUBLIC], "api.example.com": [PUBLIC, "2606:2800:220:1::1"]})


def refused(
    url: str, policy: UrlPolicy = POLICY, resolve: Callable[[str], list[str]] = PUBLIC_DNS
) -> RefusalCode:
    with pytest.raises(UrlRefused) as info:
        check_url(url, policy, resolve)
    return info.value.code


# --------------------------------------------------------------------------------------------
# Every spelling of every non-public address
# --------------------------------------------------------------------------------------------

BLOCKED_NETWORKS = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "100.64.0.0/10",
    "0.0.0.0/8",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "198.18.0.0/15",
    "192.0.0.0/24",
]


@st.composite
def blocked_v4(draw: st.DrawFn) -> ipaddress.IPv4Address:
    network = ipaddress.IPv4Network(draw(st.sampled_from(BLOCKED_NETWORKS)))
    offset = draw(st.integers(0, network.num_addresses - 1))
    return network[offset]


def spellings(address: ipaddress.IPv4Address) -> list[str]:
    n = int(address)
    a, b, c, d = address.packed
    return [
        str(address),
        f"{address}.",  # trailing dot
        str(n),  # decimal
        hex(n),  # 0x7f000001
        f"0{n:o}",  # octal
        ".".join(f"0{x:o}" for x in (a, b, c, d)),  # dotted octal
        ".".join(hex(x) for x in (a, b, c, d)),  # dotted hex
        f"{a}.{(b << 16) | (c << 8) | d}",  # 2 parts: 127.1
        f"{a}.{b}.{(c << 8) | d}",  # 3 parts
        f"[::ffff:{address}]",  # IPv4-mapped IPv6
        f"[::ffff:{(a << 8) | b:x}:{(c << 8) | d:x}]",  # mapped, hex groups
        f"[::{address}]",  # IPv4-compatible
        f"[64:ff9b::{address}]",  # NAT64
        f"[2002:{(a << 8) | b:x}:{(c << 8) | d:x}::1]",  # 6to4
    ]


@settings(max_examples=300)
@given(
    address=blocked_v4(),
    port=st.sampled_from(["", ":80", ":8080"]),
    scheme=st.sampled_from(["http", "https"]),
)
def test_every_non_public_ipv4_is_refused_whatever_the_spelling(
    address: ipaddress.IPv4Address, port: str, scheme: str
) -> None:
    for host in spellings(address):
        code = refused(f"{scheme}://{host}{port}/latest/meta-data/")
        assert code in (RefusalCode.BLOCKED_ADDRESS, RefusalCode.NUMERIC_HOST), host


@settings(max_examples=200)
@given(
    network=st.sampled_from(["::1/128", "fc00::/7", "fe80::/10", "ff00::/8", "fec0::/10", "::/128"]),
    data=st.data(),
)
def test_every_non_public_ipv6_is_refused(network: str, data: st.DataObject) -> None:
    net = ipaddress.IPv6Network(network)
    address = net[data.draw(st.integers(0, net.num_addresses - 1))]
    assert refused(f"http://[{address}]/") == RefusalCode.BLOCKED_ADDRESS
    assert refused("http://svc.example/", resolve=resolver({"svc.example": [str(address)]})) == (
        RefusalCode.BLOCKED_ADDRESS
    )


@settings(max_examples=200)
@given(
    good=st.lists(st.sampled_from([PUBLIC, "8.8.8.8", "1.1.1.1", "2606:4700::1111"]), min_size=0, max_size=4),
    bad=blocked_v4(),
    position=st.integers(0, 4),
)
def test_a_host_with_any_bad_address_is_refused(
    good: list[str], bad: ipaddress.IPv4Address, position: int
) -> None:
    addresses = [*good]
    addresses.insert(min(position, len(addresses)), str(bad))
    with pytest.raises(UrlRefused, match=f"resolves to {bad}") as info:
        check_url("https://rebind.example/hook", POLICY, resolver({"rebind.example": addresses}))
    assert info.value.code == RefusalCode.BLOCKED_ADDRESS


@settings(max_examples=200)
@given(n=st.integers(int(ipaddress.IPv4Address("11.0.0.0")), int(ipaddress.IPv4Address("99.255.255.255"))))
def test_public_addresses_pass_and_are_what_the_caller_connects_to(n: int) -> None:
    address = str(ipaddress.IPv4Address(n))
    checked = check_url(
        "https://hooks.example/x?y=1", POLICY, resolver({"hooks.example": [address, address]})
    )
    assert checked.addresses == (address,)
    assert (checked.host, checked.port, checked.target) == ("hooks.example", None, "/x?y=1")
    assert check_url(f"http://{address}:8080/", POLICY, PUBLIC_DNS).addresses == (address,)


def test_numeric_spellings_name_what_inet_aton_would_read() -> None:
    for host in ("2130706433", "0x7f000001", "017700000001", "0x7f.1", "127.1", "0177.0.0.1", "127.0.1"):
        with pytest.raises(UrlRefused, match=r"read as 127\.0\.0\.1 by inet_aton") as info:
            check_url(f"http://{host}/", POLICY, PUBLIC_DNS)
        assert info.value.code == RefusalCode.NUMERIC_HOST


def test_metadata_addresses_are_named() -> None:
    assert address_refusal(ipaddress.ip_address("169.254.169.254")) == "a cloud metadata address"
    assert address_refusal(ipaddress.ip_address("fd00:ec2::254")) == "a cloud metadata address"
    assert address_refusal(ipaddress.ip_address(PUBLIC)) is None


# --------------------------------------------------------------------------------------------
# Schemes, syntax, names, buckets, policy
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("file:///etc/passwd", RefusalCode.SCHEME),
        ("gopher://example.com:25/_HELO", RefusalCode.SCHEME),
        ("ftp://example.com/x", RefusalCode.SCHEME),
        ("data:text/plain,hello", RefusalCode.SCHEME),
        ("dict://example.com:11211/stat", RefusalCode.SCHEME),
        ("//example.com/x", RefusalCode.SCHEME),
        ("https://user:pw@example.com/", RefusalCode.USERINFO),
        ("https://example.com@127.0.0.1/", RefusalCode.USERINFO),
        ("https://example.com\\@127.0.0.1/", RefusalCode.MALFORMED),
        ("https://exa mple.com/", RefusalCode.MALFORMED),
        ("https://example.com/\r\nHost: x", RefusalCode.MALFORMED),
        ("https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", RefusalCode.MALFORMED),  # fullwidth
        ("https://[fe80::1%25eth0]/", RefusalCode.MALFORMED),
        ("https://example.com:99999/", RefusalCode.MALFORMED),
        ("https:///nohost", RefusalCode.MALFORMED),
        ("https://-bad-.example/", RefusalCode.MALFORMED),
        ("http://localhost/", RefusalCode.LOCAL_HOST),
        ("http://LOCALHOST.:8080/", RefusalCode.LOCAL_HOST),
        ("http://admin.localhost/", RefusalCode.LOCAL_HOST),
        ("http://metadata.google.internal/computeMetadata/v1/", RefusalCode.METADATA_HOST),
        ("http://metadata/", RefusalCode.METADATA_HOST),
        ("http://instance-data.ec2.internal/", RefusalCode.METADATA_HOST),
        ("http://unknown.example/", RefusalCode.UNRESOLVABLE),
        ("s3://other-bucket/model.onnx", RefusalCode.BUCKET_NOT_ALLOWED),
        ("s3://models/a/../../other/x", RefusalCode.PATH),
        ("s3://Bad_Bucket/x", RefusalCode.MALFORMED),
        ("s3://models/x?versionId=1", RefusalCode.MALFORMED),
    ],
)
def test_refusals_have_stable_codes(url: str, code: RefusalCode) -> None:
    assert refused(url) == code


def test_s3_urls_name_bucket_and_key_without_dns() -> None:
    def no_dns(host: str) -> list[str]:
        raise AssertionError(f"s3 URLs must not resolve {host}")

    checked = check_url("s3://models/proj/m1/model.onnx", POLICY, no_dns)
    assert (checked.bucket, checked.key, checked.addresses) == ("models", "proj/m1/model.onnx", ())


def test_host_suffixes_ports_and_scheme_lists_restrict() -> None:
    policy = UrlPolicy(
        schemes=frozenset({"https"}), host_suffixes=frozenset({"example.com"}), ports=frozenset({443})
    )
    assert check_url("https://api.example.com/", policy, PUBLIC_DNS).host == "api.example.com"
    assert check_url("https://example.com/", policy, PUBLIC_DNS).host == "example.com"
    assert refused("https://evil-example.com/", policy, resolver({"evil-example.com": [PUBLIC]})) == (
        RefusalCode.HOST_NOT_ALLOWED
    )
    assert refused(f"https://{PUBLIC}/", policy) == RefusalCode.HOST_NOT_ALLOWED
    assert refused("https://example.com:8443/", policy) == RefusalCode.PORT_NOT_ALLOWED
    assert refused("http://example.com/", policy) == RefusalCode.SCHEME


def test_a_trusted_origin_is_exempt_from_address_checks_only() -> None:
    policy = UrlPolicy(schemes=frozenset({"http"}), trusted_origins=frozenset({"http://127.0.0.1:4566"}))
    assert check_url("http://127.0.0.1:4566/bucket/key", policy, PUBLIC_DNS).addresses == ("127.0.0.1",)
    assert refused("http://127.0.0.1:4567/", policy) == RefusalCode.BLOCKED_ADDRESS
    assert refused("http://127.0.0.1/", policy) == RefusalCode.BLOCKED_ADDRESS
    assert refused("http://2130706433:4566/", policy) == RefusalCode.NUMERIC_HOST
    assert refused("http://user@127.0.0.1:4566/", policy) == RefusalCode.USERINFO


# --------------------------------------------------------------------------------------------
# Real HTTP: redirects to loopback are refused, the internal server sees nothing
# --------------------------------------------------------------------------------------------


@dataclass
class LocalServer:
    port: int
    requests: list[dict[str, str]] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


Routes = dict[str, Callable[[LocalServer], tuple[int, dict[str, str], bytes]]]


@pytest.fixture
def serve() -> Iterator[Callable[[Routes], LocalServer]]:
    servers: list[ThreadingHTTPServer] = []

    def start(routes: Routes) -> LocalServer:
        state = LocalServer(port=0)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                state.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                route = routes.get(self.path.split("?")[0])
                status, headers, body = route(state) if route else (404, {}, b"no such route")
                self.send_response(status)
                sized = {} if headers.pop("x-unsized", None) else {"content-length": str(len(body))}
                for name, value in {**sized, **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        state.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def redirect(location: str, status: int = 302) -> Callable[[LocalServer], tuple[int, dict[str, str], bytes]]:
    return lambda _s: (status, {"location": location}, b"")


def test_a_redirect_to_loopback_is_refused_and_never_requested(
    serve: Callable[[Routes], LocalServer],
) -> None:
    internal = serve({"/latest/meta-data/": lambda _s: (200, {}, b"secret credentials")})
    target = f"http://127.0.0.1:{internal.port}/latest/meta-data/"
    public = serve(
        {
            "/hook": redirect(target),
            "/hook-decimal": redirect(f"http://2130706433:{internal.port}/latest/meta-data/"),
            "/hook-localhost": redirect(f"http://localhost:{internal.port}/latest/meta-data/"),
            "/hook-ipv6": redirect(f"http://[::1]:{internal.port}/latest/meta-data/", 307),
            "/hook-metadata": redirect("http://169.254.169.254/latest/meta-data/", 301),
            "/hook-file": redirect("file:///etc/passwd"),
        }
    )
    # The policy trusts the "public" server's own loopback origin, and nothing else.
    policy = UrlPolicy(schemes=frozenset({"http"}), trusted_origins=frozenset({public.origin}))
    expected = {
        "/hook": RefusalCode.BLOCKED_ADDRESS,
        "/hook-decimal": RefusalCode.NUMERIC_HOST,
        "/hook-localhost": RefusalCode.LOCAL_HOST,
        "/hook-ipv6": RefusalCode.BLOCKED_ADDRESS,
        "/hook-metadata": RefusalCode.BLOCKED_ADDRESS,
        "/hook-file": RefusalCode.SCHEME,
    }
    for path, code in expected.items():
        with pytest.raises(UrlRefused) as info:
            fetch(public.origin + path, policy, timeout=10)
        assert info.value.code == code, (path, info.value)
    assert [r["path"] for r in public.requests] == list(expected)  # each hook was requested once
    assert internal.requests == []  # ...and no redirect reached the internal server
    # Without the trust entry the first hop itself is refused: loopback is loopback.
    with pytest.raises(UrlRefused, match="loopback"):
        fetch(target, UrlPolicy(schemes=frozenset({"http"})), timeout=10)
    assert internal.requests == []


def test_redirects_within_the_policy_are_followed_with_one_resolution_per_hop(
    serve: Callable[[Routes], LocalServer],
) -> None:
    other = serve({"/final": lambda _s: (200, {"content-type": "text/plain"}, b"done")})
    first = serve(
        {"/start": redirect("/middle", 303), "/middle": redirect(f"http://svc-b.test:{other.port}/final")}
    )
    lookups: list[str] = []

    def resolve(host: str) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    policy = UrlPolicy(
        schemes=frozenset({"http"}),
        trusted_origins=frozenset({f"http://svc-a.test:{first.port}", f"http://svc-b.test:{other.port}"}),
    )
    response = fetch(
        f"http://svc-a.test:{first.port}/start",
        policy,
        resolve=resolve,
        headers={"Authorization": "Bearer secret"},
    )
    assert (response.status, response.body) == (200, b"done")
    assert response.url == f"http://svc-b.test:{other.port}/final"
    assert response.redirects == (
        f"http://svc-a.test:{first.port}/start",
        f"http://svc-a.test:{first.port}/middle",
    )
    # One lookup per hop, and the socket went to the checked address (the names exist nowhere else).
    assert lookups == ["svc-a.test", "svc-a.test", "svc-b.test"]
    assert first.requests[0]["host"] == f"svc-a.test:{first.port}"
    # Credentials stay on their origin.
    assert [r.get("authorization") for r in first.requests] == ["Bearer secret", "Bearer secret"]
    assert other.requests[0].get("authorization") is None


def test_redirect_loops_and_large_bodies_are_cut_off(serve: Callable[[Routes], LocalServer]) -> None:
    server = serve(
        {
            "/loop": redirect("/loop"),
            "/big": lambda _s: (200, {}, bytes(2 * 1024 * 1024)),
            "/big-unsized": lambda _s: (
                200,
                {"x-unsized": "1", "connection": "close"},
                bytes(2 * 1024 * 1024),
            ),
        }
    )
    policy = UrlPolicy(schemes=frozenset({"http"}), trusted_origins=frozenset({server.origin}))
    with pytest.raises(UrlRefused) as loop:
        fetch(server.origin + "/loop", policy, max_redirects=5)
    assert loop.value.code == RefusalCode.TOO_MANY_REDIRECTS
    assert len(server.requests) == 6  # the first request and five redirects, then it stops
    with pytest.raises(ResponseTooLarge, match="declares 2097152 bytes"):
        fetch(server.origin + "/big", policy, max_bytes=1024 * 1024)
    with pytest.raises(ResponseTooLarge, match="sent more than 1048576 bytes"):
        fetch(server.origin + "/big-unsized", policy, max_bytes=1024 * 1024)
    assert len(fetch(server.origin + "/big", policy, max_bytes=4 * 1024 * 1024).body) == 2 * 1024 * 1024
