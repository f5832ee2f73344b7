"""The development certificate: its contents, reuse in the data directory, a real handshake."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from callhook import tls
from callhook.errors import ConfigError

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_self_signed_names_localhost_and_loopback_addresses() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = x509.load_pem_x509_certificate(tls.self_signed(key, NOW))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert cert.issuer == cert.subject
    assert cert.not_valid_before_utc <= NOW
    assert cert.not_valid_after_utc == NOW + timedelta(days=365)
    assert cert.public_key() == key.public_key()


def test_made_once_then_reused(tmp_path: Path) -> None:
    first = tls.ensure_dev_certificate(tmp_path, NOW)
    assert first.status == "created"
    assert first.cert_path == tmp_path / "tls" / "dev-cert.pem"
    assert stat.S_IMODE(first.key_path.stat().st_mode) == 0o600
    cert_bytes, key_bytes = first.cert_path.read_bytes(), first.key_path.read_bytes()

    again = tls.ensure_dev_certificate(tmp_path, NOW + timedelta(days=100))
    assert again.status == "reused"
    assert again.cert_path.read_bytes() == cert_bytes
    assert again.key_path.read_bytes() == key_bytes
    tls.check_pair(again.cert_path, again.key_path)


def test_replaced_near_its_end_or_when_the_key_does_not_match(tmp_path: Path) -> None:
    first = tls.ensure_dev_certificate(tmp_path, NOW)
    late = tls.ensure_dev_certificate(tmp_path, NOW + timedelta(days=360))
    assert late.status == "renewed"
    assert load(late.cert_path).not_valid_after_utc == NOW + timedelta(days=360 + 365)

    other = ec.generate_private_key(ec.SECP256R1())
    first.key_path.write_bytes(tls.key_pem(other))
    with pytest.raises(ConfigError, match="belong together"):
        tls.check_pair(first.cert_path, first.key_path)
    fixed = tls.ensure_dev_certificate(tmp_path, NOW + timedelta(days=361))
    assert fixed.status == "renewed"
    tls.check_pair(fixed.cert_path, fixed.key_path)


def test_check_pair_rejects_what_is_not_pem(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match="cannot use the TLS certificate"):
        tls.check_pair(junk, junk)


def test_an_unwritable_data_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot keep the development certificate"):
        tls.ensure_dev_certificate(blocker, NOW)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_clients_trusting_the_certificate_complete_a_handshake(tmp_path: Path, host: str) -> None:
    dev = tls.ensure_dev_certificate(tmp_path, datetime.now(UTC))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(dev.cert_path, dev.key_path)
    client_ctx = ssl.create_default_context(cafile=str(dev.cert_path))
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # the default from Python 3.13 on

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls_conn:
                tls_conn.sendall(b"hello")
        except ssl.SSLError:
            pass  # the client's failure is what the test reports

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname=host) as client,
        ):
            assert client.recv(5) == b"hello"
    finally:
        thread.join(timeout=10)
        listener.close()
