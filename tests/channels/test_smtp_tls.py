"""SMTP over TLS, as production relays take it: smtp+starttls:// (STARTTLS, which the server
here requires before anything else) and smtps:// (TLS from the first byte), against a real
aiosmtpd server whose certificate the channel verifies (a throwaway CA, trusted through
SSL_CERT_FILE as an operator's own CA would be)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from notifier.channels.smtp import SmtpChannel
from notifier.messages import EmailEnvelope, Outcome, SendResult
from tests.channels.test_smtp import layout_envelopes, results_of
from tests.support.smtp import RecordingHandler, free_port


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, signed by itself; written as PEM (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notifier test SMTP")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def certificate(tmp_path, monkeypatch) -> tuple[Path, Path]:
    cert_path, key_path = _certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))  # the channel's default context trusts it
    return cert_path, key_path


def _server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def starttls_server(certificate) -> Iterator[tuple[Controller, RecordingHandler]]:
    handler = RecordingHandler()
    context = _server_context(certificate)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), decode_data=False,
                            tls_context=context, require_starttls=True)  # fmt: skip
    controller.start()
    yield controller, handler
    controller.stop()


@pytest.fixture
def implicit_tls_server(certificate) -> Iterator[tuple[Controller, RecordingHandler]]:
    handler = RecordingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), decode_data=False,
                            ssl_context=_server_context(certificate))  # fmt: skip
    controller.start()
    yield controller, handler
    controller.stop()


def _send(url: str, count: int) -> dict:
    session = SmtpChannel(url, timeout_seconds=5, connections=2).open()
    try:
        return results_of(session, layout_envelopes(count))
    finally:
        session.close()


def test_starttls_sends_every_message_over_tls(starttls_server):
    """The server refuses mail before STARTTLS: every message accepted shows the channel
    upgraded the connection first, and verified the server's certificate to do it."""
    controller, handler = starttls_server
    results = _send(f"smtp+starttls://127.0.0.1:{controller.port}", 6)
    assert {result.outcome for result in results.values()} == {Outcome.SENT}
    assert sorted(r.rcpt_tos[0] for r in handler.wait_for(6)) == sorted(
        f"reader{n}@example.com" for n in range(6)
    )


def test_smtps_sends_every_message_over_tls(implicit_tls_server):
    controller, handler = implicit_tls_server
    results = _send(f"smtps://127.0.0.1:{controller.port}", 6)
    assert {result.outcome for result in results.values()} == {Outcome.SENT}
    assert len(handler.wait_for(6)) == 6


def test_a_server_certificate_nobody_trusts_is_a_retry_with_the_reason(
    implicit_tls_server, monkeypatch
):
    """Without the CA the certificate does not verify: nothing is sent in clear text or to
    an impostor, and the reason is recorded."""
    controller, handler = implicit_tls_server
    monkeypatch.delenv("SSL_CERT_FILE")
    results = _send(f"smtps://127.0.0.1:{controller.port}", 2)
    assert {result.outcome for result in results.values()} == {Outcome.RETRY}
    assert all("CERTIFICATE_VERIFY_FAILED" in r.detail for r in results.values()), results
    assert handler.received == []


def big_envelope(to: str, megabytes: int) -> EmailEnvelope:
    """More data than a socket takes in one write: it goes out in parts, as the socket
    becomes writable again."""
    line = b"x" * 76 + b"\r\n"
    body = line * (megabytes * 1024 * 1024 // len(line))
    return EmailEnvelope(
        "news@aze.test", to, b"Subject: big\r\nTo: " + to.encode() + b"\r\n\r\n" + body
    )


def test_many_and_large_messages_over_tls_arrive_whole(implicit_tls_server):
    """A non-blocking TLS socket takes a write in parts and may want to read first; every
    byte still arrives, in order, on two connections at once."""
    controller, handler = implicit_tls_server
    envelopes = layout_envelopes(200)
    big = big_envelope("big@example.com", 4)
    session = SmtpChannel(
        f"smtps://127.0.0.1:{controller.port}", timeout_seconds=5, connections=2
    ).open()
    try:
        results = results_of(session, [*envelopes, (200, big)])
    finally:
        session.close()
    assert results == {key: SendResult.sent() for key in range(201)}
    received = {r.rcpt_tos[0]: r.data for r in handler.wait_for(201)}
    assert received == {e.to: e.data for _, e in [*envelopes, (200, big)]}
