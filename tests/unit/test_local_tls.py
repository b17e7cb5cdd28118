"""The local CA and server certificate: a chain an ordinary TLS client verifies for the hosts it
was made for, keys kept private, reused across restarts, re-issued when the hosts change."""

from __future__ import annotations

import datetime as dt
import ssl
import stat
import threading
from pathlib import Path
from socket import create_connection, socket

import pytest

from modelfleet.local.tls import TlsError, given, self_signed
from modelfleet.trust import tls_verify


def _handshake(cert: Path, key: Path, ca: Path, server_name: str) -> str:
    """Complete a real TLS handshake on loopback; return the negotiated protocol version."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    listener = socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client_ctx = tls_verify(ca)
    assert isinstance(client_ctx, ssl.SSLContext)
    try:
        with (
            create_connection(listener.getsockname(), timeout=5) as raw,
            client_ctx.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            version = tls.version() or ""
            tls.sendall(b"x")
    finally:
        t.join(5)
        listener.close()
    return version


def test_self_signed_chain_verifies_for_its_hosts(tmp_path: Path) -> None:
    files = self_signed(tmp_path, ["127.0.0.1", "localhost"])
    assert files.ca is not None
    assert _handshake(files.cert, files.key, files.ca, "localhost").startswith("TLS")
    assert _handshake(files.cert, files.key, files.ca, "127.0.0.1").startswith("TLS")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(files.cert, files.key, files.ca, "example.com")
    for private in (files.key, tmp_path / "ca.key"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_reused_while_valid_reissued_for_new_hosts_or_expiry(tmp_path: Path) -> None:
    first = self_signed(tmp_path, ["127.0.0.1"])
    cert, ca = first.cert.read_bytes(), (tmp_path / "ca.pem").read_bytes()
    self_signed(tmp_path, ["127.0.0.1"])
    assert first.cert.read_bytes() == cert and (tmp_path / "ca.pem").read_bytes() == ca
    self_signed(tmp_path, ["127.0.0.1", "gateway.local"])
    assert first.cert.read_bytes() != cert  # new names, new certificate ...
    assert (tmp_path / "ca.pem").read_bytes() == ca  # ... from the same CA clients already trust
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=390)
    renewed = self_signed(tmp_path, ["127.0.0.1", "gateway.local"], now=later)
    assert renewed.cert.read_bytes() != cert


def test_given_certificate_must_match_its_key(tmp_path: Path) -> None:
    a = self_signed(tmp_path / "a", ["127.0.0.1"])
    b = self_signed(tmp_path / "b", ["127.0.0.1"])
    assert given(a.cert, a.key).cert == a.cert
    with pytest.raises(TlsError, match="does not belong"):
        given(a.cert, b.key)
    with pytest.raises(TlsError, match="does not exist"):
        given(tmp_path / "missing.pem", a.key)


def test_verification_is_off_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELFLEET_CA_FILE", raising=False)
    default = tls_verify()
    assert isinstance(default, ssl.SSLContext) and default.verify_mode == ssl.CERT_REQUIRED
    assert tls_verify(verify=False) is False
    with pytest.raises(FileNotFoundError):
        tls_verify(tmp_path / "nope.pem")
