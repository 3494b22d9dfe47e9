"""Email channels: SMTP against a real local server, and the development Maildir."""

from __future__ import annotations

import email
import email.policy
import gc
import mailbox
import shutil
import socketserver
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from notifier.channels.base import Outcome, SendResult
from notifier.channels.dev_mailbox import DevMailboxChannel
from notifier.channels.smtp import SmtpChannel
from notifier.messages import RenderedEmail
from tests.support.smtp import RecordingHandler, free_port

MAIL_FROM = "Aze.Media <news@aze.test>"


def message(to: str = "reader@example.com", subject: str = "Baku port traffic grows"):
    rendered = RenderedEmail(to, subject, "Plain body ə ğ ş ı\n", "<p>HTML body ə ğ ş ı</p>")
    return rendered.to_mime(MAIL_FROM)


def channel_for(url: str) -> SmtpChannel:
    return SmtpChannel(url, timeout_seconds=5)


def count_connections(handler: RecordingHandler) -> list[object]:
    """Record each EHLO (one per connection: smtplib greets once, then reuses it)."""
    servers: list[object] = []

    async def handle_EHLO(server, session, envelope, hostname, responses):
        servers.append(server)
        session.host_name = hostname  # what aiosmtpd does itself when no hook is set
        return responses

    handler.handle_EHLO = handle_EHLO  # aiosmtpd looks hooks up on each new connection
    return servers


@contextmanager
def smtp_server_on(port: int, handler: RecordingHandler, **options) -> Iterator[Controller]:
    controller = Controller(handler, hostname="127.0.0.1", port=port, decode_data=False, **options)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@contextmanager
def server_greeting_with(reply: bytes) -> Iterator[int]:
    """A mail server that refuses every connection in its greeting (e.g. a blocked IP)."""

    class Greeter(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(reply)
            self.rfile.readline()  # wait for the client to hang up (or QUIT)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Greeter)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def session(smtp):
    connection = channel_for(smtp.url).open()
    yield connection
    connection.close()


# --------------------------------------------------------------------------- outcomes


def test_an_accepted_message_is_sent_and_arrives_intact(smtp, session):
    result = session.send(message(subject="Ərəfədə — Новости 🚀"))
    assert result == SendResult(Outcome.SENT, "accepted")
    [received] = smtp.handler.received
    assert received.mail_from == "news@aze.test"
    assert received.rcpt_tos == ["reader@example.com"]
    parsed = received.message
    assert parsed["Subject"] == "Ərəfədə — Новости 🚀"
    assert parsed.get_body(("plain",)).get_content().strip() == "Plain body ə ğ ş ı"
    assert "HTML body ə ğ ş ı" in parsed.get_body(("html",)).get_content()


def test_a_recipient_refused_with_550_is_gone_with_the_reply(smtp, session):
    smtp.handler.refuse["gone@example.com"] = "550 5.1.1 No such user"
    result = session.send(message("gone@example.com"))
    assert result.outcome is Outcome.GONE
    assert result.detail == "SMTP 550 5.1.1 No such user"
    assert smtp.handler.received == []


def test_a_451_reply_is_retry_and_the_session_goes_on(smtp, session):
    connections = count_connections(smtp.handler)
    smtp.handler.temporary_failures = 1
    result = session.send(message())
    assert result.outcome is Outcome.RETRY
    assert result.detail == "SMTP 451 4.3.0 Try again later"
    assert session.send(message()).outcome is Outcome.SENT
    assert len(smtp.handler.received) == 1
    assert len(connections) == 1


def test_a_refused_recipient_does_not_spoil_the_rest_of_the_batch(smtp, session):
    connections = count_connections(smtp.handler)
    smtp.handler.refuse["gone@example.com"] = "550 5.1.1 No such user"
    outcomes = [
        session.send(message(to)).outcome
        for to in ("a@example.com", "gone@example.com", "b@example.com")
    ]
    assert outcomes == [Outcome.SENT, Outcome.GONE, Outcome.SENT]
    assert [r.rcpt_tos for r in smtp.handler.received] == [["a@example.com"], ["b@example.com"]]
    assert len(connections) == 1


def test_a_session_reuses_one_connection_for_many_messages(smtp):
    connections = count_connections(smtp.handler)
    channel = channel_for(smtp.url)
    first = channel.open()
    recipients = [f"reader{i}@example.com" for i in range(5)]
    try:
        assert all(first.send(message(to)).outcome is Outcome.SENT for to in recipients)
    finally:
        first.close()
    assert len(connections) == 1
    assert [r.rcpt_tos[0] for r in smtp.handler.received] == recipients

    second = channel.open()
    try:
        assert second.send(message()).outcome is Outcome.SENT
    finally:
        second.close()
    assert len(connections) == 2  # a new session is a new connection


def test_a_dropped_connection_is_reopened_once_and_the_message_sent(smtp, session):
    connections = count_connections(smtp.handler)
    assert session.send(message("a@example.com")).outcome is Outcome.SENT
    closed = threading.Event()

    def drop() -> None:
        connections[0].transport.close()
        closed.set()

    smtp.controller.loop.call_soon_threadsafe(drop)
    assert closed.wait(5)
    assert session.send(message("b@example.com")).outcome is Outcome.SENT
    assert [r.rcpt_tos for r in smtp.handler.received] == [["a@example.com"], ["b@example.com"]]
    assert len(connections) == 2


def test_an_unreachable_server_is_retry_and_not_contacted_again_in_that_session():
    port = free_port()  # nothing listens here
    channel = channel_for(f"smtp://127.0.0.1:{port}")
    session = channel.open()
    try:
        first = session.send(message())
        assert first.outcome is Outcome.RETRY
        assert first.detail.startswith("SMTP server unreachable:")

        handler = RecordingHandler()
        connections = count_connections(handler)
        with smtp_server_on(port, handler):
            later = [session.send(message(f"r{i}@example.com")) for i in range(3)]
            assert [r.outcome for r in later] == [Outcome.RETRY] * 3
            assert {r.detail for r in later} == {first.detail}
            assert connections == [] and handler.received == []

            fresh = channel.open()  # the next batch tries again
            try:
                assert fresh.send(message()).outcome is Outcome.SENT
            finally:
                fresh.close()
            assert len(handler.received) == 1
    finally:
        session.close()


def test_closing_an_unused_session_does_not_connect(smtp):
    connections = count_connections(smtp.handler)
    channel_for(smtp.url).open().close()
    assert connections == []


# --------------------------------------------------------------------------- server-wide refusals


def test_a_greeting_refusal_is_not_a_bad_address():
    """554 in the banner refuses our host, not the reader: retry, never mark the address gone."""
    with server_greeting_with(b"554 5.7.1 Service unavailable; client host blocked\r\n") as port:
        session = channel_for(f"smtp://127.0.0.1:{port}").open()
        try:
            result = session.send(message())
        finally:
            session.close()
    assert result.outcome is Outcome.RETRY, result


def test_rejected_smtp_credentials_are_not_a_bad_address():
    """535 at AUTH is our configuration: every reader's delivery must not fail for good."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # a separate test covers the leak
        result = send_with_wrong_password()
        gc.collect()
    assert "535" in result.detail
    assert result.outcome is Outcome.RETRY, result


def test_a_failed_login_leaves_no_connection_open():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        result = send_with_wrong_password()
        gc.collect()
    assert "535" in result.detail
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


def send_with_wrong_password() -> SendResult:
    def authenticator(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=False, handled=False)

    port = free_port()
    handler = RecordingHandler()
    with smtp_server_on(port, handler, authenticator=authenticator, auth_require_tls=False):
        session = channel_for(f"smtp://user:wrong@127.0.0.1:{port}").open()
        try:
            return session.send(message())
        finally:
            session.close()


def test_a_server_demanding_authentication_is_not_a_bad_address(smtp, session):
    """530 at MAIL FROM refuses the sender, not the recipient."""

    async def handle_MAIL(server, session, envelope, address, mail_options):
        return "530 5.7.0 Authentication required"

    smtp.handler.handle_MAIL = handle_MAIL
    result = session.send(message())
    assert "530" in result.detail
    assert result.outcome is Outcome.RETRY, result


# --------------------------------------------------------------------------- dev mailbox


def test_dev_mailbox_stores_a_readable_maildir_message(tmp_path):
    directory = tmp_path / "var" / "mailbox"
    session = DevMailboxChannel(directory).open()
    try:
        result = session.send(message(subject="Ərəfədə — Новости 🚀"))
    finally:
        session.close()
    assert result.outcome is Outcome.SENT
    assert result.detail.startswith("stored in dev mailbox as ")
    key = result.detail.removeprefix("stored in dev mailbox as ")

    box = mailbox.Maildir(directory, factory=None, create=False)
    assert list(box.keys()) == [key]
    with box.get_file(key) as raw:
        stored = email.message_from_binary_file(raw, policy=email.policy.default)
    assert stored["Subject"] == "Ərəfədə — Новости 🚀"
    assert stored["To"] == "reader@example.com"
    assert stored.get_body(("plain",)).get_content().strip() == "Plain body ə ğ ş ı"
    assert "HTML body ə ğ ş ı" in stored.get_body(("html",)).get_content()


def test_dev_mailbox_keeps_every_message(tmp_path):
    session = DevMailboxChannel(tmp_path / "mailbox").open()
    try:
        keys = {session.send(message(f"r{i}@example.com")).detail for i in range(3)}
    finally:
        session.close()
    assert len(keys) == 3
    assert len(mailbox.Maildir(tmp_path / "mailbox", create=False)) == 3


def test_dev_mailbox_that_cannot_be_written_is_retry(tmp_path):
    directory = tmp_path / "mailbox"
    session = DevMailboxChannel(directory).open()
    try:
        shutil.rmtree(directory / "new")
        (directory / "new").write_text("not a directory")
        result = session.send(message())
    finally:
        session.close()
    assert result.outcome is Outcome.RETRY
    assert result.detail.startswith("dev mailbox not writable:")
