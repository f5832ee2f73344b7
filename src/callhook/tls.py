"""TLS for `callhook serve`: a self-signed development certificate, made once and reused.

``self_signed`` is pure (the key, the clock and the names come in; PEM bytes go out);
``ensure_dev_certificate`` is the edge that keeps the pair in the data directory.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from callhook.errors import ConfigError

#: the names the development certificate is valid for
DEV_NAMES = ("localhost", "127.0.0.1", "::1")
#: how long a new development certificate is valid
DEV_VALIDITY = timedelta(days=365)
#: a development certificate closer than this to its end is replaced on start
RENEW_BEFORE = timedelta(days=7)
CERT_FILE = "dev-cert.pem"
KEY_FILE = "dev-key.pem"


@dataclass(frozen=True, slots=True)
class DevCertificate:
    cert_path: Path
    key_path: Path
    not_after: datetime
    #: "created", "renewed" or "reused"
    status: str


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def self_signed(
    key: ec.EllipticCurvePrivateKey,
    now: datetime,
    names: tuple[str, ...] = DEV_NAMES,
    validity: timedelta = DEV_VALIDITY,
    serial: int = 1,
) -> bytes:
    """A self-signed server certificate (PEM) for ``names``, valid from ``now``."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "callhook development certificate"),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(serial)
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(
            x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, the file having ``mode`` from its first byte."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)


def _reusable(cert_path: Path, key_path: Path, now: datetime) -> datetime | None:
    """The end of validity of the stored pair if it can still be used, else None."""
    if not (cert_path.is_file() and key_path.is_file()):
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError):
        return None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        return None
    if cert.not_valid_after_utc - RENEW_BEFORE <= now:
        return None
    return cert.not_valid_after_utc


def ensure_dev_certificate(data_dir: Path, now: datetime) -> DevCertificate:
    """The development certificate in ``data_dir/tls``: reused while valid, else (re)made."""
    folder = data_dir / "tls"
    cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
    existed = cert_path.exists()
    try:
        not_after = _reusable(cert_path, key_path, now)
        if not_after is not None:
            if key_path.stat().st_mode & 0o077:
                os.chmod(key_path, 0o600)
            return DevCertificate(cert_path, key_path, not_after, "reused")
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        serial = x509.random_serial_number()
        cert = self_signed(key, now, serial=serial)
        _write(key_path, key_pem(key), 0o600)
        _write(cert_path, cert, 0o644)
    except OSError as exc:
        raise ConfigError(
            f"cannot keep the development certificate in {folder}: {exc.strerror or exc}"
        ) from None
    return DevCertificate(
        cert_path, key_path, now + DEV_VALIDITY, "renewed" if existed else "created"
    )


def check_pair(cert_path: Path, key_path: Path) -> None:
    """Raise ConfigError unless the certificate and key load and belong together."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"cannot use the TLS certificate {cert_path} with the key {key_path}: "
            f"{exc.reason or exc} (are they PEM files that belong together?)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the TLS files: {exc.strerror or exc}") from None
