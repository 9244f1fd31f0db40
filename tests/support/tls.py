"""A throwaway certificate authority and a server certificate for localhost, per test session.

The real clients refuse plain http and ws, so the end-to-end tests put a TLS proxy in front of
the stack with a certificate from this CA, and hand the CA to Node (NODE_EXTRA_CA_CERTS) and to
Chromium (the server key's SPKI hash).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TlsFiles", "make_certificates"]


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path  # PEM of the CA: what clients trust
    cert: Path  # PEM of the server certificate
    key: Path  # PEM of its private key
    combined: Path  # certificate then key in one file (HAProxy's crt)
    spki_sha256: str  # base64 SHA-256 of the server's public key (Chromium's allow list)

    def client_context(self) -> ssl.SSLContext:
        """What a Python client verifies the test servers with: the test CA alone."""
        return ssl.create_default_context(cafile=str(self.ca_cert))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_certificates(folder: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> TlsFiles:
    """A new CA and a server certificate for `hosts` (names and IP addresses), written to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc) - timedelta(minutes=5)
    later = now + timedelta(days=2)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("pgwarden test CA"))
        .issuer_name(_name("pgwarden test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    paths = TlsFiles(
        ca_cert=folder / "ca.pem",
        cert=folder / "server.pem",
        key=folder / "server-key.pem",
        combined=folder / "server-combined.pem",
        spki_sha256=base64.b64encode(hashlib.sha256(spki).digest()).decode(),
    )
    paths.ca_cert.write_bytes(ca_pem)
    # The chain a server presents: its own certificate, then the issuer.
    paths.cert.write_bytes(cert_pem + ca_pem)
    paths.key.write_bytes(_pem(key))
    paths.combined.write_bytes(cert_pem + ca_pem + _pem(key))
    for private in (paths.key, paths.combined):
        private.chmod(0o600)
    return paths
