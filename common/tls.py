"""Server TLS contexts and the self-signed certificate for development."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from common.config import TLSConfig


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def ensure_self_signed(cert: Path, key: Path, hostname: str) -> bool:
    """Write a self-signed pair for hostname unless both files exist. True if made."""
    if cert.exists() and key.exists():
        return False
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    pkey = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    sans = [x509.DNSName(hostname), x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pkey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(pkey, hashes.SHA256())
    )
    cert.parent.mkdir(parents=True, exist_ok=True)
    key.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = pkey.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return True


def prepare(tls: TLSConfig, hostname: str) -> bytes:
    """Called by a parent (root) at start and reload: the key and certificate as PEM.

    Children never read the key file: the parent hands them these bytes, so
    the key can stay readable by root alone.
    """
    if tls.self_signed:
        from common.users import locked

        # Both daemons may come up at once on a first start: one makes the pair.
        with locked(tls.cert):
            ensure_self_signed(tls.cert, tls.key, hostname)
    server_context(tls.cert, tls.key)  # fail at start-up, not on the first STARTTLS
    return tls.key.read_bytes() + b"\n" + tls.cert.read_bytes()


def context_from_pem(pem: bytes) -> ssl.SSLContext:
    """A server context from what the parent handed over, through an anonymous file."""
    fd = os.memfd_create("tls", os.MFD_CLOEXEC)
    try:
        os.write(fd, pem)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        return ctx
    finally:
        os.close(fd)
