"""HTTPS for the local gateway: a given certificate and key, or a self-signed pair made here.

`self_signed(directory, hosts)` keeps a local certificate authority (`ca.pem`, with its key in a
0600 file) and a server certificate it signed for the given hosts (IP addresses and DNS names as
subject alternative names). Both are reused while valid, so a CA file handed to the CLI, the SDK
or an edge agent keeps working across restarts; the server certificate is re-issued when it is
near expiry or when the hosts change. Clients trust the CA file, never "no verification".
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 397  # what browsers accept for a leaf certificate
RENEW_BEFORE = dt.timedelta(days=30)


class TlsError(Exception):
    """A certificate or key that cannot be used."""


@dataclass(frozen=True)
class TlsFiles:
    cert: Path  # the server certificate chain the gateway presents
    key: Path
    ca: Path | None  # the CA clients should trust (None: the certificate is from a public CA)


def given(cert: Path, key: Path, ca: Path | None = None) -> TlsFiles:
    """An operator's own certificate and key, checked to exist and to be a matching pair."""
    for p in (cert, key, *([ca] if ca else [])):
        if not p.is_file():
            raise TlsError(f"{p} does not exist")
    try:
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except ValueError as e:
        raise TlsError(f"cannot read the certificate or key: {e}") from None
    if certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise TlsError(f"the key {key} does not belong to the certificate {cert}")
    return TlsFiles(cert, key, ca)


def self_signed(directory: Path, hosts: Sequence[str], now: dt.datetime | None = None) -> TlsFiles:
    """A local CA and a server certificate for `hosts`, made once and reused (see module doc)."""
    now = now or dt.datetime.now(dt.UTC)
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert_path, ca_key_path = directory / "ca.pem", directory / "ca.key"
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    ca_cert, ca_key = _load_pair(ca_cert_path, ca_key_path)
    if ca_cert is None or ca_key is None or ca_cert.not_valid_after_utc - now < RENEW_BEFORE:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _ca_certificate(ca_key, now)
        _write_key(ca_key_path, ca_key)
        ca_cert_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        cert_path.unlink(missing_ok=True)  # signed by the old CA
    server, server_key = _load_pair(cert_path, key_path)
    if (
        server is None
        or server_key is None
        or server.issuer != ca_cert.subject
        or server.not_valid_after_utc - now < RENEW_BEFORE
        or _names(server) != _san(hosts)
    ):
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = _server_certificate(server_key, ca_cert, ca_key, hosts, now)
        _write_key(key_path, server_key)
        cert_path.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    return TlsFiles(cert_path, key_path, ca_cert_path)


def _load_pair(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate | None, ec.EllipticCurvePrivateKey | None]:
    if not (cert_path.is_file() and key_path.is_file()):
        return None, None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError:
        return None, None  # unreadable: made again
    return cert, key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _ca_certificate(key: ec.EllipticCurvePrivateKey, now: dt.datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelfleet local CA")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _server_certificate(
    key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    hosts: Sequence[str],
    now: dt.datetime,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _san(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return names


def _names(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []
