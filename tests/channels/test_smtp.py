"""Email channels: SMTP against a real local server, and the development Maildir."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import email
import email.policy
import gc
import mailbox
import os
import select
import shutil
import socket
import socketserver
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from notifier.channels.dev_mailbox import DevMailboxChannel
from notifier.channels.smtp import (
    LOOKAHEAD_PER_CONNECTION,
    SmtpChannel,
    accepted_not_handed_at_most,
)
from notifier.delivery.email_layout import EmailLayout
from notifier.messages import EmailEnvelope, Outcome, RenderedEmail, SendResult
from tests.support.settling import settled_count
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


# --------------------------------------------------------------------------- send_many


LAYOUT_SLOTS = ["NOTIFIERSLOT0UNSUBSCRIBEURL"]


def layout_envelopes(count: int) -> list[tuple[int, EmailEnvelope]]:
    """Envelopes as the fan-out makes them: one layout, each reader's own link."""
    rendered = RenderedEmail(
        "ignored@example.com",
        "Ərəfədə ə ğ ş ı — Новости 🚀",
        "Plain body ə ğ ş ı\n.a line that starts with a dot\n"
        "Unsubscribe: NOTIFIERSLOT0UNSUBSCRIBEURL\n",
        '<p>HTML body ə ğ ş ı</p><a href="NOTIFIERSLOT0UNSUBSCRIBEURL">Unsubscribe</a>',
        {"List-Unsubscribe": "<NOTIFIERSLOT0UNSUBSCRIBEURL>"},
    )
    layout = EmailLayout.prepare(rendered, MAIL_FROM, LAYOUT_SLOTS)
    return [
        (i, layout.envelope(f"reader{i}@example.com", [f"https://aze.test/u/{i}?a=1&b=2"]))
        for i in range(count)
    ]


def dotted_envelope(to: str = "dots@example.com") -> EmailEnvelope:
    """Raw data whose lines start with dots, one of them a lone dot: stuffing must hold."""
    data = b"Subject: dots\r\n\r\n.leading\r\n..two\r\n.\r\nend\r\n"
    return EmailEnvelope("news@aze.test", to, data)


def advertise_pipelining(handler: RecordingHandler) -> list[object]:
    """Make aiosmtpd offer PIPELINING (it reads pipelined commands in order anyway);
    records each connection like count_connections."""
    servers: list[object] = []

    async def handle_EHLO(server, session, envelope, hostname, responses):
        servers.append(server)
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    handler.handle_EHLO = handle_EHLO
    return servers


def offering(handler: RecordingHandler, pipelining: bool) -> list[object]:
    return advertise_pipelining(handler) if pipelining else count_connections(handler)


both_modes = pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelined"])


def results_of(session, messages) -> dict[int, SendResult]:
    results: dict[int, SendResult] = {}
    for key, result in session.send_many(messages):
        assert key not in results, f"two results for {key}"
        results[key] = result
    return results


@both_modes
def test_send_many_over_three_connections_delivers_each_envelope_once_intact(smtp, pipelining):
    connections = offering(smtp.handler, pipelining)
    envelopes = layout_envelopes(200)
    sent = dict(envelopes)
    session = SmtpChannel(smtp.url, timeout_seconds=5, connections=3).open()
    try:
        results = results_of(session, iter(envelopes))
    finally:
        session.close()
    assert results == {key: SendResult.sent() for key in sent}
    received = smtp.handler.received
    assert sorted(r.rcpt_tos[0] for r in received) == sorted(e.to for e in sent.values())
    by_rcpt = {r.rcpt_tos[0]: r for r in received}
    for key, envelope in sent.items():
        got = by_rcpt[envelope.to]
        assert got.mail_from == "news@aze.test"
        assert got.data == envelope.data  # byte for byte
        parsed = got.message
        assert parsed["Subject"] == "Ərəfədə ə ğ ş ı — Новости 🚀"
        assert parsed["List-Unsubscribe"] == f"<https://aze.test/u/{key}?a=1&b=2>"
        text = parsed.get_body(("plain",)).get_content()
        assert ".a line that starts with a dot\r\n" in text
    assert len(connections) == 3


@both_modes
def test_send_many_stuffs_dots_and_takes_service_messages_too(smtp, pipelining):
    offering(smtp.handler, pipelining)
    session = channel_for(smtp.url).open()
    try:
        results = results_of(session, [(1, dotted_envelope()), (2, message("svc@example.com"))])
    finally:
        session.close()
    assert results == {1: SendResult.sent(), 2: SendResult.sent()}
    dots, service = smtp.handler.received
    assert dots.data == dotted_envelope().data
    assert service.rcpt_tos == ["svc@example.com"]
    assert service.message.get_body(("plain",)).get_content().strip() == "Plain body ə ğ ş ı"


@both_modes
def test_send_many_a_550_recipient_is_gone_and_only_that_one(smtp, pipelining):
    connections = offering(smtp.handler, pipelining)
    smtp.handler.refuse["reader3@example.com"] = "550 5.1.1 No such user"
    session = SmtpChannel(smtp.url, timeout_seconds=5, connections=2).open()
    try:
        # Enough messages that the second connection opens while the first is busy, also
        # on a loaded machine (with 8 the first sometimes sent them all alone).
        results = results_of(session, layout_envelopes(60))
    finally:
        session.close()
    assert results[3] == SendResult(Outcome.GONE, "SMTP 550 5.1.1 No such user")
    assert {k: r.outcome for k, r in results.items() if k != 3} == dict.fromkeys(
        [k for k in range(60) if k != 3], Outcome.SENT
    )
    assert len(smtp.handler.received) == 59
    assert len(connections) == 2  # the refusal did not cost a connection


@both_modes
def test_send_many_reconnects_after_421_mid_stream_and_sends_the_rest(smtp, pipelining):
    connections = offering(smtp.handler, pipelining)
    accept = smtp.handler.handle_DATA
    seen = []

    async def handle_DATA(server, session, envelope):
        seen.append(envelope.rcpt_tos[0])
        if len(seen) == 5:  # the fifth message: the server goes away instead of accepting
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.3.2 Service shutting down"
        return await accept(server, session, envelope)

    smtp.handler.handle_DATA = handle_DATA
    session = channel_for(smtp.url).open()
    try:
        results = results_of(session, layout_envelopes(12))
    finally:
        session.close()
    assert results == {key: SendResult.sent() for key in range(12)}
    recipients = [r.rcpt_tos[0] for r in smtp.handler.received]
    assert sorted(recipients) == sorted(f"reader{i}@example.com" for i in range(12))
    assert seen.count(seen[4]) == 2  # the message the 421 hit was sent again, once
    assert len(connections) == 2


def test_send_many_to_a_closed_port_is_retry_for_every_message_with_the_reason():
    session = SmtpChannel(f"smtp://127.0.0.1:{free_port()}", 5, connections=3).open()
    try:
        results = results_of(session, layout_envelopes(10))
    finally:
        session.close()
    assert sorted(results) == list(range(10))
    assert {r.outcome for r in results.values()} == {Outcome.RETRY}
    assert all(r.detail.startswith("SMTP server unreachable:") for r in results.values())


def test_send_many_on_a_server_refusing_in_its_greeting_is_retry_for_every_message():
    reply = b"554 5.7.1 Service unavailable; client host blocked\r\n"
    with server_greeting_with(reply) as port:
        session = SmtpChannel(f"smtp://127.0.0.1:{port}", 5, connections=2).open()
        try:
            results = results_of(session, layout_envelopes(6))
        finally:
            session.close()
    assert sorted(results) == list(range(6))
    assert {r.outcome for r in results.values()} == {Outcome.RETRY}
    assert {r.detail for r in results.values()} == {
        "SMTP server refused us: SMTP 554 5.7.1 Service unavailable; client host blocked"
    }


def test_a_connection_refused_while_others_serve_steps_aside(smtp):
    """A server that allows us fewer connections than we asked for: the refused connection
    hands its messages to those that serve, and none is failed."""
    lock = threading.Lock()
    greeted: list[object] = []

    async def handle_EHLO(server, session, envelope, hostname, responses):
        with lock:
            greeted.append(server)
            if len(greeted) > 2:
                return ["421 4.7.0 Too many connections from your host"]
        session.host_name = hostname
        return responses

    smtp.handler.handle_EHLO = handle_EHLO
    session = SmtpChannel(smtp.url, timeout_seconds=5, connections=4).open()
    try:
        results = results_of(session, layout_envelopes(40))
    finally:
        session.close()
    assert results == {key: SendResult.sent() for key in range(40)}
    assert len(smtp.handler.received) == 40


def test_send_many_raises_the_callers_error_after_every_pulled_message_has_its_result(smtp):
    envelopes = layout_envelopes(5)

    def messages():
        yield from envelopes
        raise RuntimeError("database went away")

    session = SmtpChannel(smtp.url, timeout_seconds=5, connections=2).open()
    results: dict[int, SendResult] = {}
    try:
        with pytest.raises(RuntimeError, match="database went away"):
            for key, result in session.send_many(messages()):
                results[key] = result
    finally:
        session.close()
    assert results == {key: SendResult.sent() for key in range(5)}
    assert len(smtp.handler.received) == 5


def accepted_while_caller_pauses(smtp, session, count: int, every: int) -> list[int]:
    """Send `count` envelopes; after each `every` results the caller pauses as a recorder
    flush does (a database commit). For each pause: how many messages the server accepted
    that the caller had not been handed yet, once the connections have nothing left to do."""
    seen: list[int] = []
    handed = 0
    for _key, result in session.send_many(layout_envelopes(count)):
        assert result.outcome is Outcome.SENT
        handed += 1
        if handed % every or handed == count:
            continue
        seen.append(settled_count(lambda: len(smtp.handler.received)) - handed)
    return seen


def test_accepted_not_handed_back_is_at_most_two_per_connection(smtp):
    """What a worker killed while recording can have sent and not recorded: the messages the
    server accepted that send_many has not handed back. Nothing is sent while the caller
    holds a result; by then each connection has at most one message's data out and one
    result not yet handed, so at a pause (a recorder's commit) at most 2 x SMTP_CONNECTIONS
    - 1 are accepted and unrecorded (README: "Recording in groups"). Pausing after every
    third result: some are accepted ahead (the data written with the last reply read),
    never more."""
    connections = 3
    advertise_pipelining(smtp.handler)
    session = SmtpChannel(smtp.url, timeout_seconds=5, connections=connections).open()
    try:
        seen = accepted_while_caller_pauses(smtp, session, 36, every=3)
    finally:
        session.close()
    assert 0 < max(seen) <= accepted_not_handed_at_most(connections) == 2 * connections - 1, seen
    assert len(smtp.handler.received) == 36


def test_a_lookahead_of_one_on_one_connection_sends_nothing_ahead(smtp):
    """The strictest setting (SMTP_LOOKAHEAD=1, SMTP_CONNECTIONS=1): nothing is accepted that
    the caller has not been handed, so with DELIVERY_RECORD_BATCH=1 nothing goes twice."""
    session = SmtpChannel(smtp.url, timeout_seconds=5, connections=1, lookahead=1).open()
    try:
        seen = accepted_while_caller_pauses(smtp, session, 12, every=1)
    finally:
        session.close()
    assert seen == [0] * 11
    assert len(smtp.handler.received) == 12


def test_send_many_pulls_messages_lazily_in_the_callers_thread(smtp):
    pulled: list[tuple[int, str]] = []
    session = SmtpChannel(smtp.url, timeout_seconds=5, connections=2).open()

    def messages():
        for key, envelope in layout_envelopes(50):
            pulled.append((key, threading.current_thread().name))
            yield key, envelope

    try:
        stream = session.send_many(messages())
        first = next(stream)
        assert len(pulled) <= 2 * LOOKAHEAD_PER_CONNECTION  # bounded lookahead
        rest = list(stream)
    finally:
        session.close()
    assert len(pulled) == 50 and len([first, *rest]) == 50
    assert {name for _, name in pulled} == {threading.current_thread().name}


class FakePacer:
    def __init__(self, delays: list[float]) -> None:
        self.delays = list(delays)
        self.calls: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def reserve(self, key: str, count: int = 1) -> float:
        with self.lock:
            self.calls.append((key, count))
            return self.delays.pop(0) if self.delays else 0.0


@both_modes
def test_send_many_asks_the_pacer_before_each_message_and_waits_what_it_says(smtp, pipelining):
    offering(smtp.handler, pipelining)
    pacer = FakePacer([0.0, 0.05, 0.0, 0.2, 0.0, 0.0, 0.025])
    session = SmtpChannel(smtp.url, timeout_seconds=5, connections=2, pacer=pacer).open()
    try:
        started = time.monotonic()
        results = results_of(session, layout_envelopes(10))
        took = time.monotonic() - started
        assert session.send(message()).outcome is Outcome.SENT
    finally:
        session.close()
    assert {r.outcome for r in results.values()} == {Outcome.SENT}
    assert pacer.calls == [("email", 1)] * 11
    assert took >= 0.2  # the message told to wait 0.2 s did (a lower bound: never flaky)
    assert len(smtp.handler.received) == 11


def test_a_connection_waiting_for_the_pacer_does_not_hold_up_the_others(smtp):
    """One thread drives every connection: the one told to wait waits alone. Message 1 is
    told to wait 0.5 s; the other connection sends the rest meanwhile, so message 1 is the
    last to arrive, though it was the second pulled."""
    advertise_pipelining(smtp.handler)
    pacer = FakePacer([0.0, 0.5])
    session = SmtpChannel(smtp.url, timeout_seconds=5, connections=2, pacer=pacer).open()
    try:
        results = results_of(session, layout_envelopes(6))
    finally:
        session.close()
    assert results == {key: SendResult.sent() for key in range(6)}
    arrived = [r.rcpt_tos[0] for r in smtp.handler.received]
    assert arrived[-1] == "reader1@example.com", arrived
    assert sorted(arrived) == sorted(f"reader{i}@example.com" for i in range(6))


def test_send_takes_an_envelope(smtp, session):
    [(_, envelope)] = layout_envelopes(1)
    assert session.send(envelope) == SendResult.sent()
    [received] = smtp.handler.received
    assert received.data == envelope.data


# --------------------------------------------------------------------------- SMTPUTF8


def non_ascii_envelope() -> EmailEnvelope:
    rendered = RenderedEmail("x", "Salam ə", "ə\n", "<p>ə</p>")
    return EmailLayout.prepare(rendered, MAIL_FROM, []).envelope("rəşad@bakı.az", [])


def test_a_non_ascii_address_goes_out_with_smtputf8(smtp, session):
    envelope = non_ascii_envelope()
    assert session.send(envelope) == SendResult.sent()
    [received] = smtp.handler.received
    assert received.rcpt_tos == ["rəşad@bakı.az"]
    assert received.data == envelope.data
    assert received.message["To"] == "rəşad@bakı.az"


def test_a_non_ascii_address_fails_on_a_server_without_smtputf8():
    handler = RecordingHandler()
    with smtp_server_on(port := free_port(), handler, enable_SMTPUTF8=False):
        session = channel_for(f"smtp://127.0.0.1:{port}").open()
        try:
            result = session.send(non_ascii_envelope())
            assert session.send(message()).outcome is Outcome.SENT  # the connection is fine
        finally:
            session.close()
    assert result.outcome is Outcome.FAILED
    assert "SMTPUTF8" in result.detail
    assert [r.rcpt_tos for r in handler.received] == [["reader@example.com"]]


# --------------------------------------------------------------------------- strict pipelining


class ScriptedServer(abc.ABC):
    """A raw TCP server on 127.0.0.1 whose every connection is one `converse(sock)` call, in
    a thread of its own; a context manager. Each subclass scripts its own conversation."""

    def __init__(self) -> None:
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.converse(self.request)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @abc.abstractmethod
    def converse(self, sock) -> None:
        """Talk to one connected client until done."""


class StrictPipeliningServer(ScriptedServer):
    """A scripted SMTP server that offers PIPELINING and insists on it: it answers MAIL, RCPT
    and DATA only once DATA has arrived, so a client that waits for the MAIL reply first
    hangs. After a message's data it waits a moment for the next message's commands before
    answering, and counts the messages whose end came with the next one's commands."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.ends_with_next_group = 0
        self.lock = threading.Lock()
        super().__init__()

    def converse(self, sock) -> None:
        buffer = bytearray()

        def line() -> bytes:
            while b"\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    raise EOFError
                buffer.extend(chunk)
            end = buffer.index(b"\r\n") + 2
            text = bytes(buffer[:end])
            del buffer[:end]
            return text

        def more_within(seconds: float) -> bool:
            return bool(buffer) or bool(select.select([sock], [], [], seconds)[0])

        sock.sendall(b"220 strict ESMTP\r\n")
        try:
            line()  # EHLO
            sock.sendall(b"250-strict\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            replies: list[bytes] = []
            rcpt = ""
            while True:
                command = line()
                verb = command[:4].upper()
                if verb == b"QUIT":
                    sock.sendall(b"221 bye\r\n")
                    return
                if verb == b"RCPT":
                    rcpt = command.decode().partition("<")[2].partition(">")[0]
                if verb != b"DATA":
                    replies.append(b"250 OK\r\n")  # held back until DATA comes
                    continue
                sock.sendall(b"".join(replies) + b"354 go ahead\r\n")
                replies = []
                data = bytearray()
                while (text := line()) != b".\r\n":
                    data += text[1:] if text.startswith(b".") else text
                with self.lock:
                    self.received.append((rcpt, bytes(data)))
                    if more_within(0.3):
                        self.ends_with_next_group += 1
                sock.sendall(b"250 queued\r\n")
        except (EOFError, OSError):
            return


def test_pipelining_sends_each_message_in_one_round_trip_when_offered():
    count = 20
    with StrictPipeliningServer() as server:
        session = SmtpChannel(f"smtp://127.0.0.1:{server.port}", timeout_seconds=3).open()
        envelopes = layout_envelopes(count)
        try:
            results = results_of(session, envelopes)
        finally:
            session.close()
    assert results == {key: SendResult.sent() for key in range(count)}
    assert [data for _, data in server.received] == [e.data for _, e in envelopes]
    # every message's end went out with the next message's MAIL/RCPT/DATA (not the last)
    assert server.ends_with_next_group == count - 1


class SilentServer(ScriptedServer):
    """Greets, answers EHLO (with PIPELINING), then reads every command and answers none:
    a server that hangs mid-transaction."""

    def converse(self, sock) -> None:
        sock.sendall(b"220 silent ESMTP\r\n")
        with contextlib.suppress(OSError):
            sock.recv(1024)  # EHLO
            sock.sendall(b"250-silent\r\n250 PIPELINING\r\n")
            while sock.recv(65536):
                pass


def test_a_server_that_stops_answering_is_a_retry_after_the_timeout():
    """The timeout holds mid-transaction (the kernel keeps it: SO_RCVTIMEO), and the reason
    recorded says the server did not answer, not that it closed the connection."""
    with SilentServer() as server:
        # 0.5 s, not SMTP_TIMEOUT_SECONDS's 30: each message waits for it twice (a lost
        # connection is tried once more), three messages.
        session = SmtpChannel(f"smtp://127.0.0.1:{server.port}", timeout_seconds=0.5).open()
        try:
            results = results_of(session, layout_envelopes(3))
        finally:
            session.close()
    assert {result.outcome for result in results.values()} == {Outcome.RETRY}
    assert all("timed out" in result.detail for result in results.values()), results


def test_stopping_early_starts_no_further_message_and_closes_cleanly(smtp):
    advertise_pipelining(smtp.handler)
    session = SmtpChannel(smtp.url, timeout_seconds=5, connections=2).open()
    pulled: list[int] = []

    def messages():
        for key, envelope in layout_envelopes(100):
            pulled.append(key)
            yield key, envelope

    try:
        stream = session.send_many(messages())
        assert next(stream)[1] == SendResult.sent()
        stream.close()
        assert len(pulled) <= 2 * LOOKAHEAD_PER_CONNECTION + 1
        assert len(smtp.handler.received) <= len(pulled)
        assert session.send(message()).outcome is Outcome.SENT  # the session still works
    finally:
        session.close()


# --------------------------------------------------------------------------- dev mailbox: many


def test_dev_mailbox_send_many_stores_envelopes_and_messages(tmp_path):
    directory = tmp_path / "mailbox"
    envelopes = layout_envelopes(3)
    session = DevMailboxChannel(directory).open()
    try:
        results = dict(session.send_many([*envelopes, (7, message("svc@example.com"))]))
    finally:
        session.close()
    assert sorted(results) == [0, 1, 2, 7]
    assert {r.outcome for r in results.values()} == {Outcome.SENT}
    box = mailbox.Maildir(directory, factory=None, create=False)
    stored = {}
    for key in box.iterkeys():
        with box.get_file(key) as raw:
            parsed = email.message_from_binary_file(raw, policy=email.policy.default)
        stored[parsed["To"]] = parsed
    assert sorted(stored) == ["reader0@example.com", "reader1@example.com",
                              "reader2@example.com", "svc@example.com"]  # fmt: skip
    reader = stored["reader1@example.com"]
    assert reader["Subject"] == "Ərəfədə ə ğ ş ı — Новости 🚀"
    assert reader["List-Unsubscribe"] == "<https://aze.test/u/1?a=1&b=2>"
    assert "HTML body ə ğ ş ı" in reader.get_body(("html",)).get_content()


# --------------------------------------------------------------------------- Postfix smtp-sink

SMTP_SINK = "/usr/sbin/smtp-sink"


@contextmanager
def smtp_sink() -> Iterator[int]:
    """Postfix's test server (it offers PIPELINING and drops every message)."""
    if not os.path.exists(SMTP_SINK):
        pytest.skip(f"{SMTP_SINK} is not installed (Debian package postfix)")
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses to run as root
    sink = subprocess.Popen([SMTP_SINK, *user, f"127.0.0.1:{port}", "100"])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or sink.poll() is not None:
                    raise
                time.sleep(0.02)
        yield port
    finally:
        sink.terminate()
        sink.wait(10)


def test_send_many_into_postfix_smtp_sink_over_pipelined_connections():
    with smtp_sink() as port:
        session = SmtpChannel(f"smtp://127.0.0.1:{port}", timeout_seconds=5, connections=3).open()
        try:
            results = results_of(session, layout_envelopes(300))
            assert any(lane.pipelining for lane in session.lanes)  # it was offered and used
        finally:
            session.close()
    assert results == {key: SendResult.sent() for key in range(300)}


def _send_batch(channel: SmtpChannel, recipients: list[str]) -> list[SendResult]:
    session = channel.open()
    try:
        return [result for _, result in session.send_many(enumerate(map(message, recipients)))]
    finally:
        session.close()


def test_kept_connections_serve_the_next_batch_instead_of_new_ones(smtp):
    connections = count_connections(smtp.handler)
    channel = SmtpChannel(smtp.url, timeout_seconds=5, connections=2, keepalive_seconds=30)
    try:
        first = _send_batch(channel, [f"a{i}@example.com" for i in range(10)])
        second = _send_batch(channel, [f"b{i}@example.com" for i in range(10)])
    finally:
        channel.close_idle()
    assert {r.outcome for r in first + second} == {Outcome.SENT}
    assert len(smtp.handler.received) == 20
    assert len(connections) == 2, "the second batch reused the first batch's connections"


def test_a_kept_connection_the_server_dropped_meanwhile_is_reopened(smtp):
    connections = count_connections(smtp.handler)
    channel = SmtpChannel(smtp.url, timeout_seconds=5, connections=1, keepalive_seconds=30)
    try:
        assert _send_batch(channel, ["a@example.com"]) == [SendResult.sent()]
        ((_, kept),) = channel._idle
        kept.client.sock.shutdown(socket.SHUT_RDWR)  # as a server's idle timeout does
        assert _send_batch(channel, ["b@example.com"]) == [SendResult.sent()]
    finally:
        channel.close_idle()
    assert [r.rcpt_tos for r in smtp.handler.received][-1] == ["b@example.com"]
    assert len(connections) == 2, "one new connection replaced the dead one"


def test_a_connection_kept_longer_than_keepalive_is_closed_not_reused(smtp):
    connections = count_connections(smtp.handler)
    channel = SmtpChannel(smtp.url, timeout_seconds=5, connections=1, keepalive_seconds=0.05)
    try:
        _send_batch(channel, ["a@example.com"])
        time.sleep(0.2)
        _send_batch(channel, ["b@example.com"])
    finally:
        channel.close_idle()
    assert len(connections) == 2


def test_a_message_larger_than_the_socket_takes_at_once_arrives_whole(smtp):
    from tests.channels.test_smtp_tls import big_envelope

    advertise_pipelining(smtp.handler)
    big = big_envelope("big@example.com", 8)
    session = SmtpChannel(smtp.url, timeout_seconds=5, connections=2).open()
    try:
        results = results_of(session, [(0, big), *layout_envelopes(3)[1:]])
    finally:
        session.close()
    assert results == {key: SendResult.sent() for key in range(3)}
    [received] = [r for r in smtp.handler.received if r.rcpt_tos == ["big@example.com"]]
    assert received.data == big.data
