"""Email over SMTP: connections reused for a batch, pipelined, every reply mapped to an outcome.

Only a refusal of the recipient address (5xx at RCPT) means the reader is gone. A server
that refuses us as a whole (greeting, EHLO, login, sender) is a temporary problem for every
message, retried until the operator fixes it or the attempts run out.

    5xx at RCPT: gone · 4xx at RCPT, any refusal at MAIL, 4xx at or after DATA: retry ·
    5xx at or after DATA: failed · 421 anywhere, or a lost connection: reconnect and try that
    message once more, then retry · no connection, or refused at greeting/EHLO/AUTH: retry,
    every message of the session without asking again · a non-ASCII address and a server
    without SMTPUTF8: failed.

`send` and `send_many` take an EmailMessage (service emails) or an EmailEnvelope (the fan-out
path: data sent as it is, only dot-stuffed). `send_many` spreads messages over `connections`
SMTP connections, all driven from the caller's thread: smtplib opens each (greeting, TLS,
login, EHLO), then each connection's transactions run as a coroutine over a non-blocking
socket, resumed when a reply is in (see _Run). When the server offers
PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in one write, and the end of one message's
data goes out in the same write as the next message's MAIL, RCPT and DATA: one round trip
per message. A connection the server refuses while others serve steps aside and hands its
messages to them (a server that allows us fewer connections than configured).

With a DkimSigner every message is signed once, when its wire bytes are made (a message tried
again after a dropped connection keeps its signature).
"""

from __future__ import annotations

import contextlib
import copy
import email.generator
import email.policy
import email.utils
import functools
import io
import math
import os
import re
import select
import smtplib
import socket
import ssl
import threading
import weakref
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from email.message import EmailMessage
from time import monotonic
from urllib.parse import unquote, urlsplit

from notifier.channels.dkim import DkimSigner
from notifier.channels.pacing import Pacer
from notifier.messages import EmailEnvelope, Outcome, SendResult

# The default of SMTP_LOOKAHEAD: how many messages `send_many` pulls ahead of the results, per
# connection: a connection holds its current message and the next one it pipelines, and the
# rest wait in the run's inbox so that a connection finds its next one at hand while the
# caller is busy; few enough that a caller that stops early has little in flight.
LOOKAHEAD_PER_CONNECTION = 4


def accepted_not_handed_at_most(connections: int, lookahead: int = LOOKAHEAD_PER_CONNECTION) -> int:
    """How many messages the server may have accepted that `send_many` has not handed back,
    whenever the caller holds a result (records, commits, or is killed): nothing is written
    meanwhile, and each connection has at most one message's data out and one result not
    yet handed (one of the two with a lookahead of 1), less the result the caller holds."""
    return min(lookahead, 2) * connections - 1


_NEWLINES = re.compile(rb"\r\n|\r|\n")
_MAX_REPLY_LINE = 8192  # a longer reply line is an error, as smtplib has it (its _MAXLINE)


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return f"SMTP {code} {' '.join(text.split())}"


class SmtpChannel:
    """SMTP_URL: smtp://[user:pass@]host:port, smtps://… (TLS), smtp+starttls://…

    `connections`: how many SMTP connections `send_many` uses at once (each opened on first
    use and kept for the session). `pacer`: asked `reserve("email")` before each message is
    sent; the connection waits the answer while the others go on.
    `keepalive_seconds`: a closed session's connections wait this long for the next session
    of this channel (the next batch), so a TLS handshake and login are not paid per batch;
    0 closes them with the session. A connection the server dropped meanwhile is reopened
    on first use like any dropped connection. `signer`: DKIM-signs every message sent.
    `lookahead`: messages pulled per connection ahead of the results handed back; see
    accepted_not_handed_at_most for what that means for a caller that is killed.
    """

    name = "email"

    def __init__(
        self,
        smtp_url: str,
        timeout_seconds: float,
        connections: int = 1,
        pacer: Pacer | None = None,
        keepalive_seconds: float = 0.0,
        signer: DkimSigner | None = None,
        lookahead: int = LOOKAHEAD_PER_CONNECTION,
    ) -> None:
        if connections < 1 or lookahead < 1:
            raise ValueError("connections and lookahead must be at least 1")
        parts = urlsplit(smtp_url)
        self.scheme = parts.scheme
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout_seconds
        self.connections = connections
        self.lookahead = lookahead
        self.pacer = pacer
        self.keepalive_seconds = keepalive_seconds
        self.signer = signer
        self._tls: ssl.SSLContext | None = None
        self._idle: list[tuple[float, _Lane]] = []  # (when put back, lane), oldest first
        self._idle_lock = threading.Lock()
        self._pid = os.getpid()
        # A channel dropped with connections still kept (a test, a rebuilt registry) closes
        # them: they are never used again.
        weakref.finalize(self, _quit_all, self._idle)

    def take_lanes(self, count: int) -> list[_Lane]:
        """`count` connections for a new session: kept ones still fresh, then new ones."""
        taken: list[_Lane] = []
        stale: list[_Lane] = []
        with self._idle_lock:
            if self._pid != os.getpid():  # a forked child never shares its parent's sockets
                self._idle[:], self._pid = [], os.getpid()
            fresh_after = monotonic() - self.keepalive_seconds
            while self._idle and len(taken) < count:
                kept_at, lane = self._idle.pop()
                (taken if kept_at >= fresh_after else stale).append(lane)
            stale += [lane for kept_at, lane in self._idle if kept_at < fresh_after]
            self._idle[:] = [(at, lane) for at, lane in self._idle if at >= fresh_after]
        for lane in stale:
            lane.quit()
        return taken + [_Lane(self) for _ in range(count - len(taken))]

    def close_idle(self) -> None:
        """Close every kept connection (tests, and a process that stops sending)."""
        with self._idle_lock:
            idle = list(self._idle)
            self._idle.clear()
        _quit_all(idle)

    def give_back(self, lanes: list[_Lane]) -> None:
        """A session is done: keep its working connections for the next one, or close them."""
        for lane in lanes:
            if lane.client is None or lane.retired is not None or self.keepalive_seconds <= 0:
                lane.quit()
                continue
            with self._idle_lock:
                self._idle.append((monotonic(), lane))

    def _tls_context(self) -> ssl.SSLContext:
        """Made once: loading the system's CA certificates costs milliseconds, and plain
        smtp:// never needs it."""
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def open(self) -> SmtpSession:
        return SmtpSession(self)

    def connect(self) -> smtplib.SMTP:
        """A connection that has greeted (EHLO), and logged in if the URL says so."""
        name = _local_hostname()
        if self.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, name, timeout=self.timeout, context=self._tls_context()
            )
        else:
            client = smtplib.SMTP(self.host, self.port, name, timeout=self.timeout)
        try:
            if self.scheme == "smtp+starttls":
                client.starttls(context=self._tls_context())
            if self.username:
                client.login(self.username, self.password or "")
            client.ehlo_or_helo_if_needed()
        except BaseException:
            client.close()
            raise
        return client


_SMTPUTF8_SEEN: dict[str, tuple[float, bool]] = {}  # server -> (when asked, offered)


def offers_smtputf8(channel: SmtpChannel, trusted_seconds: float) -> bool | None:
    """Whether the server offers SMTPUTF8 (which a non-ASCII local part needs); None when it
    cannot be asked right now. An answer is trusted for `trusted_seconds` in this process,
    so the subscription form can refuse such an address instead of accepting mail it cannot
    send, without a connection per sign-up."""
    key = f"{channel.scheme}://{channel.host}:{channel.port}"
    seen = _SMTPUTF8_SEEN.get(key)
    if seen is not None and monotonic() - seen[0] < trusted_seconds:
        return seen[1]
    lane = _Lane(channel)
    if lane.open() is not None:
        return None
    lane.quit()
    _SMTPUTF8_SEEN[key] = (monotonic(), lane.smtputf8)
    return lane.smtputf8


def _quit_all(idle: list[tuple[float, _Lane]]) -> None:
    for _, lane in idle:
        lane.quit()
    idle.clear()


@functools.cache
def _local_hostname() -> str:
    """The name we EHLO with, looked up once per process (smtplib would ask DNS per
    connection)."""
    return socket.getfqdn()


class _Mail:
    """What goes on the wire for one message: envelope addresses and dot-stuffed data."""

    __slots__ = ("eightbit", "mail_from", "payload", "rcpts", "smtputf8")

    def __init__(self, mail_from: str, rcpts: list[str], data: bytes, smtputf8: bool) -> None:
        for address in (mail_from, *rcpts):
            if "\r" in address or "\n" in address or "<" in address or ">" in address:
                raise ValueError(f"not a bare address: {address!r}")
        if not rcpts:
            raise ValueError("the message has no recipient")
        self.mail_from = mail_from
        self.rcpts = rcpts
        self.smtputf8 = smtputf8
        self.eightbit = not data.isascii()
        self.payload = _dot_stuffed(data)

    @classmethod
    def of(cls, message: EmailEnvelope | EmailMessage, signer: DkimSigner | None = None) -> _Mail:
        sign = signer.signed if signer is not None else bytes
        if isinstance(message, EmailEnvelope):
            international = not (message.mail_from.isascii() and message.to.isascii())
            return cls(message.mail_from, [message.to], sign(message.data), international)
        # What smtplib.SMTP.send_message does: envelope from Sender/From and To/Cc/Bcc,
        # Bcc not on the wire, UTF-8 headers (and SMTPUTF8) for non-ASCII addresses.
        sender = message["Sender"] or message["From"]
        mail_from = email.utils.getaddresses([str(sender or "")])[0][1]
        fields = [str(f) for f in (message["To"], message["Cc"], message["Bcc"]) if f is not None]
        rcpts = [address for _, address in email.utils.getaddresses(fields) if address]
        international = not all(a.isascii() for a in (mail_from, *rcpts))
        if message["Bcc"] is not None:
            message = copy.copy(message)
            del message["Bcc"]
        policy = message.policy
        if international and isinstance(policy, email.policy.EmailPolicy):  # an EmailMessage's
            policy = policy.clone(utf8=True)
        with io.BytesIO() as buffer:
            email.generator.BytesGenerator(buffer, policy=policy).flatten(message, linesep="\r\n")
            data = _NEWLINES.sub(b"\r\n", buffer.getvalue())  # as smtplib: no bare CR or LF
        return cls(mail_from, rcpts, sign(data), international)


def _dot_stuffed(data: bytes) -> bytes:
    """The DATA payload: a "." that starts a line doubled, ended with CRLF.CRLF.

    The data is sent as it is otherwise: EmailEnvelope.data has CRLF line ends by contract
    (checking that costs more than building a layout envelope), and messages are flattened
    with them. A "." after a bare LF is doubled too, so no line of ours can end the data."""
    if _starts_a_line_with_dot(data):
        data = data.replace(b"\n.", b"\n..")
        if data.startswith(b"."):
            data = b"." + data
    if not data.endswith(b"\r\n"):
        data = (data[:-1] if data.endswith(b"\n") else data) + b"\r\n"
    return data + b".\r\n"


def _starts_a_line_with_dot(data: bytes) -> bool:
    """Whether a "." follows a line end: hops from dot to dot (memchr), fast when dots are
    few, as in base64 bodies; a plain scan when there are many."""
    find = data.find
    at = find(b".")
    for _ in range(64):
        if at < 0:
            return False
        if at == 0 or data[at - 1] == 10:  # b"\n"
            return True
        at = find(b".", at + 1)
    return data.startswith(b".") or b"\n." in data


class _Job:
    __slots__ = ("announced", "attempt", "due", "key", "mail", "message", "paced")

    def __init__(self, key: int, message: EmailEnvelope | EmailMessage) -> None:
        self.key = key
        self.message = message
        self.mail: _Mail | None = None
        self.attempt = 1
        self.paced = False  # the pacer was asked for this message
        self.due = 0.0  # when the pacer lets it go (monotonic clock); 0: at once
        self.announced = False  # its MAIL/RCPT/DATA already went out on the connection


class _Closing(Exception):
    """The server said 421: it is closing this connection."""

    def __init__(self, code: int, message: bytes) -> None:
        super().__init__(code, message)
        self.detail = _reply(code, message)


class _Lane:
    """One SMTP connection of a session, and what its server offers.

    Opened by smtplib on a blocking socket (greeting, TLS, login, EHLO), then used without
    blocking: the session's thread writes and reads it when the socket is ready, among the
    session's other connections (see _Run)."""

    def __init__(self, channel: SmtpChannel) -> None:
        # Weak: kept connections wait in their channel's pool, and a dropped channel must
        # still be collectable so its pool is closed.
        self._channel = weakref.ref(channel)
        self.client: smtplib.SMTP | None = None
        self.pipelining = False
        self.smtputf8 = False
        self.eightbitmime = False
        self.retired: str | None = None  # refused us while another connection served
        self.timeout = 0.0
        self.tls = False
        self.replies: deque[tuple[int, bytes]] = deque()  # received, not yet taken
        self.unread = b""  # received after the last whole line
        self.continued: list[bytes] = []  # the lines so far of a reply of several lines
        self.unsent = b""  # written, not yet taken by the socket
        self.hung_up = False  # the server closed its side
        self.failure: Exception | None = None  # reading or writing failed between steps

    def open(self) -> str | None:
        """Connect; None, or why the server cannot be used."""
        channel = self._channel()
        if channel is None:  # its session ended: nothing is sent on its lanes any more
            return "the SMTP channel was closed"
        try:
            client = channel.connect()
        except smtplib.SMTPResponseException as error:
            return f"SMTP server refused us: {_reply(error.smtp_code, error.smtp_error)}"
        except smtplib.SMTPException as error:  # e.g. no STARTTLS or AUTH on offer
            return f"SMTP server refused us: {error}"
        except OSError as error:
            return f"SMTP server unreachable: {error}"
        self.client = client
        self.pipelining = client.has_extn("pipelining")
        self.smtputf8 = client.has_extn("smtputf8")
        self.eightbitmime = client.has_extn("8bitmime")
        self.timeout = channel.timeout
        self.tls = isinstance(client.sock, ssl.SSLSocket)
        self._clear()
        if client.sock is not None:
            client.sock.setblocking(False)
        return None

    def _clear(self) -> None:
        self.replies = deque()
        self.unread = b""
        self.continued = []
        self.unsent = b""
        self.hung_up = False
        self.failure = None

    def drop(self) -> None:
        self._clear()
        if self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None

    def quit(self) -> None:
        if self.client is not None:
            try:
                if self.client.sock is not None:  # smtplib waits for QUIT's reply itself
                    self.client.sock.settimeout(self.timeout or None)
                self.client.quit()
            except (smtplib.SMTPException, OSError):
                pass  # the messages are already accepted; a failed QUIT changes nothing
            finally:
                self.drop()

    @property
    def usable(self) -> bool:
        """Connected and, as far as we know, still open."""
        return self.client is not None and not self.hung_up and self.failure is None

    def commands(self, mail: _Mail) -> list[bytes]:
        options = ""
        if mail.smtputf8:
            options = " SMTPUTF8 BODY=8BITMIME" if self.eightbitmime else " SMTPUTF8"
        elif mail.eightbit and self.eightbitmime:
            options = " BODY=8BITMIME"
        charset = "utf-8" if mail.smtputf8 else "ascii"
        lines = [f"MAIL FROM:<{mail.mail_from}>{options}\r\n".encode(charset)]
        lines += [f"RCPT TO:<{rcpt}>\r\n".encode(charset) for rcpt in mail.rcpts]
        lines.append(b"DATA\r\n")
        return lines

    def write(self, data: bytes) -> None:
        """Send `data`, or what the socket takes now: the rest when it is writable (flush)."""
        if self.unsent:
            self.unsent += data
            return
        client = self.client
        if client is None or client.sock is None:  # dropped: like any connection lost
            raise smtplib.SMTPServerDisconnected("not connected")
        try:
            sent = client.sock.send(data)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        if sent < len(data):
            self.unsent = data[sent:]

    def flush(self) -> None:
        """Send what the socket did not take before (it is writable now)."""
        client = self.client
        if client is None or client.sock is None or not self.unsent:
            return
        try:
            sent = client.sock.send(self.unsent)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return
        self.unsent = self.unsent[sent:]

    def receive(self) -> None:
        """Take what has arrived (the socket is readable) and parse the replies in it. One
        read for a plain socket: if more is waiting, it is still readable at the next wait."""
        client = self.client
        if client is None or client.sock is None:
            return
        sock = client.sock
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    self.hung_up = True
                    return
                self._parse(chunk)
                # TLS: decrypted bytes it holds back, which the socket does not show.
                if not (self.tls and sock.pending()):  # type: ignore[attr-defined]
                    return
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return

    def _parse(self, chunk: bytes) -> None:
        """Replies as smtplib reads them (code -1 for a line without one, which ends its
        reply; a line longer than 8,192 bytes is an error), all of a read at once: at fan-out
        a read holds the replies to a message's data and to the next one's commands."""
        *lines, self.unread = (self.unread + chunk).split(b"\n")
        if len(self.unread) > _MAX_REPLY_LINE:
            self.failure = smtplib.SMTPResponseException(500, "Line too long.")
        for line in lines:
            if len(line) >= _MAX_REPLY_LINE:  # with its \n, longer than smtplib reads
                self.failure = smtplib.SMTPResponseException(500, "Line too long.")
                return
            try:
                code = int(line[:3])
            except ValueError:
                code = -1
            else:
                if line[3:4] == b"-":
                    self.continued.append(line[4:].strip(b" \t\r"))
                    continue
            if self.continued:
                text = b"\n".join([*self.continued, line[4:].strip(b" \t\r")])
                self.continued = []
            else:
                text = line[4:].strip(b" \t\r")
            self.replies.append((code, text))

    def take_replies(self, count: int) -> list[tuple[int, bytes]] | Exception | None:
        """The next `count` replies; fewer when one of them is a 421 (the server closes
        after it, the rest never come); why they will not come; or None while they may."""
        replies = self.replies
        if len(replies) >= count:
            if count == 1:
                return [replies.popleft()]
            return [replies.popleft() for _ in range(count)]
        if any(code == 421 for code, _ in replies):
            taken: list[tuple[int, bytes]] = []
            while not taken or taken[-1][0] != 421:
                taken.append(replies.popleft())
            return taken
        if self.failure is not None:
            failure, self.failure = self.failure, None
            if isinstance(failure, smtplib.SMTPException):
                return failure
            return smtplib.SMTPServerDisconnected(f"Connection unexpectedly closed: {failure}")
        if self.hung_up or self.client is None:
            return smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return None

    def transact(
        self, job: _Job, mail: _Mail, take_next: Callable[[], tuple[_Job, _Mail] | None]
    ) -> Generator[object, object, SendResult]:
        """One mail transaction (`mail`: the job's, prepared), as a coroutine of its lane: it
        yields how many replies it waits for (see _Run). Raises _Closing (421), OSError or
        SMTPException when the connection fails; `take_next` may hand over the next message,
        whose commands then follow the data."""
        if mail.smtputf8 and not self.smtputf8:
            detail = "a non-ASCII address needs SMTPUTF8, which the SMTP server does not offer"
            return SendResult(Outcome.FAILED, detail)
        commands = self.commands(mail)
        if self.pipelining:  # RFC 2920: the whole group in one write, then every reply
            if not job.announced:
                self.write(b"".join(commands))
            job.announced = False
            replies = _checked((yield len(commands)))
        else:
            self.write(commands[0])
            replies = _checked((yield 1))
            if _ok(replies[0][0]):
                for command in commands[1:-1]:
                    self.write(command)
                    replies += _checked((yield 1))
                if any(_ok(code) for code, _ in replies[1:]):
                    self.write(commands[-1])
                    replies += _checked((yield 1))
        (mail_code, mail_reply), rcpt_replies = replies[0], replies[1 : len(commands) - 1]
        data_code, data_reply = replies[-1] if len(replies) == len(commands) else (0, b"")
        accepted = any(_ok(code) for code, _ in rcpt_replies)
        if data_code == 354 and not (_ok(mail_code) and accepted):
            self.drop()  # a server that wants data for a refused transaction: feed it nothing
        if not _ok(mail_code):
            return SendResult(Outcome.RETRY, _reply(mail_code, mail_reply))
        refused = [(code, reply) for code, reply in rcpt_replies if not _ok(code)]
        if not accepted:
            yield from self.reset()
            return _refusal(*refused[0])
        if data_code != 354:
            yield from self.reset()
            outcome = Outcome.FAILED if data_code >= 500 else Outcome.RETRY
            return SendResult(outcome, _reply(data_code, data_reply))
        following = take_next() if self.pipelining else None
        if following is None:
            self.write(mail.payload)
        else:  # the end of this data and the next message's group: one write
            next_job, next_mail = following
            self.write(b"".join((mail.payload, *self.commands(next_mail))))
            next_job.announced = True
        [(code, reply)] = _checked((yield 1))
        if not _ok(code):
            return SendResult(Outcome.FAILED if code >= 500 else Outcome.RETRY, _reply(code, reply))
        return _refusal(*refused[0]) if refused else _ACCEPTED

    def reset(self) -> Generator[object, object, None]:
        """RSET after a transaction that stopped before its data."""
        if self.client is None:
            return
        try:
            self.write(b"RSET\r\n")
            _checked((yield 1))
        except (_Closing, smtplib.SMTPException, OSError):
            self.drop()  # the next message reconnects; this one's outcome is known


def _checked(replies: object) -> list[tuple[int, bytes]]:
    """What a lane's coroutine was resumed with: the replies it waited for, or why they did
    not come (raised, as is a 421)."""
    if isinstance(replies, BaseException):
        raise replies
    assert isinstance(replies, list)
    code, message = replies[-1]
    if code == 421:
        raise _Closing(code, message)
    return replies


def _ok(code: int) -> bool:
    return 200 <= code < 300


def _refusal(code: int, reply: bytes) -> SendResult:
    outcome = Outcome.GONE if 500 <= code < 600 else Outcome.RETRY
    return SendResult(outcome, _reply(code, reply))


_ACCEPTED = SendResult.sent()  # one for every message the server took (results are frozen)
_RETIRED = SendResult(Outcome.RETRY, "connection retired")  # internal marker, never returned

# What a lane's coroutine yields: it waits for that many replies (an int), for its next
# message, or (a float) until that moment on the monotonic clock (the pacer's turn).
_NEXT = object()
_PAUSE = object()  # a _Turn's `waiting` while it waits for the pacer


class _Turn:
    """A lane within one send_many call: its coroutine, what it waits for, until when, and
    the messages it holds (the first is current; a second may be announced behind it)."""

    __slots__ = ("deadline", "lane", "pending", "steps", "waiting", "watched", "watched_fd")

    def __init__(self, lane: _Lane) -> None:
        self.lane = lane
        self.pending: deque[_Job] = deque()
        self.steps: Generator[object, object, None] | None = None
        self.waiting: object = None
        self.deadline: float | None = None
        self.watched: tuple[socket.socket | None, int] = (None, 0)  # (socket, poll events)
        self.watched_fd = -1


_READABLE = select.POLLIN | select.POLLPRI
_WRITABLE = select.POLLOUT
_BROKEN = select.POLLERR | select.POLLHUP | select.POLLNVAL


class _Run:
    """One send_many call, driven from the caller's thread: every connection's coroutine,
    resumed when its socket is ready, its pause is over or its next message is at hand.

    One thread for all connections: a thread per connection handed each message and result
    across threads, and those hand-overs (the GIL, the queues' locks) cost more CPU per
    email than the SMTP exchange itself (bench/send_path.py --send, README). A message's
    turn through the loop is one poll, one read and one resumption, so the loop is kept to
    what that needs: registrations change only for the connection just resumed, and the
    deadlines are looked at when the earliest of them has come."""

    def __init__(self, session: SmtpSession, lanes: list[_Lane]) -> None:
        self.lanes = lanes
        self.timeout = session.channel.timeout
        self.inbox: deque[_Job] = deque()  # pulled, not yet taken by a connection
        self.results: list[tuple[int, SendResult]] = []  # not yet handed to the caller
        self.cancelled = False
        self.idle: deque[_Turn] = deque()  # waiting for their next message
        self.poller = select.poll()
        self.by_fd: dict[int, _Turn] = {}
        self.turns = [_Turn(lane) for lane in lanes]
        for turn in self.turns:
            turn.steps = session._serve(turn, self)
            self._resume(turn, None)

    def others_serving(self, lane: _Lane) -> bool:
        """Whether another connection serves: then a server that refused `lane` (e.g. too
        many connections from us) is still usable, and `lane` steps aside rather than fail
        the messages. Connections open one at a time, in order."""
        return any(other.client is not None for other in self.lanes if other is not lane)

    def progress(self) -> list[tuple[int, SendResult]]:
        """Drive the connections until some results are in; they are handed over."""
        while True:
            while self.idle and self.inbox:
                self._resume(self.idle.popleft(), self.inbox.popleft())
            if self.results:
                results, self.results = self.results, []
                return results
            if all(turn.steps is None for turn in self.turns):  # every connection ended
                self._orphans("no SMTP connection of the session is left")
                if not self.results:
                    raise RuntimeError("send_many has messages in flight and none held")
                continue
            self._wait()

    def finish(self, cancelled: bool) -> None:
        """The call is over. A connection left mid-transaction (the caller stopped early) is
        closed: what it was saying is unknown, so it cannot serve the next message."""
        self.cancelled = cancelled
        for turn in self.turns:
            if turn.steps is not None:
                turn.steps.close()
                turn.steps = None
            if turn.pending or turn.waiting is not _NEXT or not turn.lane.usable:
                turn.lane.drop()
        self.by_fd.clear()

    def _orphans(self, detail: str) -> None:
        """Pulled messages no connection can take (a bug's last resort): each gets a retry,
        never silence."""
        while self.inbox:
            job = self.inbox.popleft()
            self.results.append((job.key, SendResult(Outcome.RETRY, detail)))

    def _resume(self, turn: _Turn, value: object) -> None:
        """Run `turn`'s coroutine with `value` until it waits for something not at hand."""
        steps = turn.steps
        lane = turn.lane
        while steps is not None:
            try:
                request = steps.send(value)
            except StopIteration:
                turn.steps, turn.waiting, turn.deadline = None, None, None
                break
            except Exception as error:  # a bug: its messages are retried, never lost
                lane.drop()
                detail = f"SMTP send failed: {error!r}"
                self.results += [
                    (job.key, SendResult(Outcome.RETRY, detail)) for job in turn.pending
                ]
                turn.pending.clear()
                turn.steps, turn.waiting, turn.deadline = None, None, None
                break
            if request.__class__ is int:
                value = lane.take_replies(request)
                if value is not None:
                    continue
                turn.waiting, turn.deadline = request, monotonic() + self.timeout
                break
            if request is _NEXT:
                if self.inbox and not self.cancelled:
                    value = self.inbox.popleft()
                    continue
                turn.waiting, turn.deadline = _NEXT, None
                self.idle.append(turn)
                break
            turn.waiting, turn.deadline = _PAUSE, request  # type: ignore[assignment]
            break
        self._watch(turn)

    def _wait(self) -> None:
        """Wait until a socket is ready or the earliest deadline comes, and resume whoever
        it concerns."""
        earliest = min((t.deadline for t in self.turns if t.deadline is not None), default=None)
        timeout = None
        if earliest is not None:
            timeout = max(0, math.ceil((earliest - monotonic()) * 1000))  # poll counts in ms
        for fd, events in self.poller.poll(timeout):
            turn = self.by_fd.get(fd)
            if turn is None:
                continue
            lane = turn.lane
            try:
                if events & (_WRITABLE | _BROKEN) and lane.unsent:
                    lane.flush()
                if events & (_READABLE | _BROKEN):
                    lane.receive()
            except OSError as error:
                lane.failure = error
            if events & select.POLLNVAL and lane.failure is None:
                lane.failure = OSError("the connection's socket was closed")
            if turn.waiting.__class__ is int:
                answer = lane.take_replies(turn.waiting)
                if answer is not None:
                    self._resume(turn, answer)
                    continue
                turn.deadline = monotonic() + self.timeout  # it is talking
            self._watch(turn)
        if earliest is None or monotonic() < earliest:
            return
        now = monotonic()
        for turn in self.turns:
            if turn.deadline is None or turn.deadline > now:
                continue
            if turn.waiting is _PAUSE:
                self._resume(turn, None)
            elif turn.waiting.__class__ is int:
                silent = "No reply from the SMTP server: timed out"
                self._resume(turn, smtplib.SMTPServerDisconnected(silent))

    def _watch(self, turn: _Turn) -> None:
        """Keep `turn`'s registration in step with its connection: an open socket for
        reading, and for writing while data waits to go. A reconnected lane's new socket
        may reuse the number of a closed one, of this lane or another: a number is let go
        only while it is still this turn's."""
        lane = turn.lane
        client = lane.client
        sock = None
        if turn.steps is not None and client is not None and lane.usable:
            sock = client.sock
        events = 0 if sock is None else _READABLE | (_WRITABLE if lane.unsent else 0)
        watched, watched_events = turn.watched
        if watched is sock and watched_events == events:
            return
        if watched is not None and self.by_fd.get(turn.watched_fd) is turn:
            del self.by_fd[turn.watched_fd]
            with contextlib.suppress(KeyError):
                self.poller.unregister(turn.watched_fd)
        turn.watched, turn.watched_fd = (None, 0), -1
        if sock is not None:
            fd = sock.fileno()
            self.poller.register(fd, events)
            self.by_fd[fd] = turn
            turn.watched, turn.watched_fd = (sock, events), fd


class SmtpSession:
    """Connects lazily, reconnects once after a drop, and stops trying after a refusal.

    A session is used from one thread at a time: `send` and `send_many` are not to be called
    concurrently."""

    def __init__(self, channel: SmtpChannel) -> None:
        self.channel = channel
        self.lanes = channel.take_lanes(channel.connections)
        self.unavailable: str | None = None

    def send(self, message: EmailMessage | EmailEnvelope) -> SendResult:
        [(_, result)] = self.send_many([(0, message)])
        return result

    def send_many(
        self, messages: Iterable[tuple[int, EmailMessage | EmailEnvelope]]
    ) -> Iterator[tuple[int, SendResult]]:
        """Send over up to `connections` connections at once; see ChannelSession.send_many.

        Every key pulled from `messages` gets exactly one result. An exception raised by
        `messages` is raised here once the messages already pulled have their results.
        Closing this iterator early starts no further message (their keys get no result).
        Nothing is sent while the caller holds a result: what was written before goes on
        at the server, at most one message's data per connection."""
        lanes = [lane for lane in self.lanes if lane.retired is None] or self.lanes[:1]
        limit = self.channel.lookahead * len(lanes)
        source = iter(messages)
        run: _Run | None = None
        failure: Exception | None = None
        exhausted = False
        in_flight = 0
        done = False
        try:
            while True:
                while not exhausted and in_flight < limit:
                    try:
                        key, message = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    except Exception as error:  # the caller's: raised once all are in
                        failure, exhausted = error, True
                        break
                    if run is None:  # the first message starts the connections
                        run = _Run(self, lanes)
                    run.inbox.append(_Job(key, message))
                    in_flight += 1
                if in_flight == 0:
                    break
                assert run is not None
                results = run.progress()
                in_flight -= len(results)
                yield from results
            done = True
        finally:
            if run is not None:
                run.finish(cancelled=not done)
        if failure is not None:
            raise failure

    def close(self) -> None:
        if self.unavailable:
            for lane in self.lanes:
                lane.quit()
        else:
            self.channel.give_back(self.lanes)

    def _serve(self, turn: _Turn, run: _Run) -> Generator[object, object, None]:
        """A connection's coroutine: take messages, send them, leave every result in the
        run's results."""
        lane, pending = turn.lane, turn.pending
        while True:
            if not pending:
                pending.append((yield _NEXT))  # type: ignore[arg-type]
            job = pending[0]
            try:
                result = yield from self._attempt(lane, job, pending, run)
            except Exception as error:  # a bug must cost a retry, never a lost result
                _lost(lane, pending)
                result = SendResult(Outcome.RETRY, f"SMTP send failed: {error!r}")
            if result is _RETIRED:  # hand what we hold to the connections that serve
                run.inbox.extendleft(reversed(pending))
                pending.clear()
                return
            pending.popleft()
            run.results.append((job.key, result))

    def _attempt(
        self, lane: _Lane, job: _Job, pending: deque[_Job], run: _Run
    ) -> Generator[object, object, SendResult]:
        """Send one message on `lane`, reconnecting once; its result (or _RETIRED)."""
        mail = job.mail
        if mail is None:
            try:
                mail = job.mail = _Mail.of(job.message, self.channel.signer)
            except (ValueError, TypeError, LookupError) as error:
                return SendResult(Outcome.FAILED, f"cannot send this message: {error}")
        while True:
            if lane.client is None and self.unavailable:
                return SendResult(Outcome.RETRY, self.unavailable)
            if not job.paced:
                self._pace(job)
            if job.due and job.due > monotonic():
                yield job.due  # the pacer's turn; other connections go on meanwhile
            if lane.client is None:
                refused = lane.open()
                if refused:
                    if run.others_serving(lane):
                        lane.retired = refused
                        return _RETIRED
                    self.unavailable = refused
                    return SendResult(Outcome.RETRY, refused)
            try:
                return (
                    yield from lane.transact(job, mail, lambda: self._following(lane, pending, run))
                )
            except _Closing as error:
                detail = error.detail
            except (OSError, smtplib.SMTPException) as error:
                detail = f"SMTP connection lost: {error}"
            _lost(lane, pending)
            if job.attempt >= 2:
                return SendResult(Outcome.RETRY, detail)
            job.attempt += 1

    def _following(self, lane: _Lane, pending: deque[_Job], run: _Run) -> tuple[_Job, _Mail] | None:
        """The message to pipeline after the current one's data, if one is at hand now and
        may go at once (prepared, paced without a wait, sendable on this connection)."""
        if len(pending) < 2:
            if run.cancelled or not run.inbox:
                return None
            pending.append(run.inbox.popleft())
        job = pending[1]
        mail = job.mail
        if mail is None:
            try:
                mail = job.mail = _Mail.of(job.message, self.channel.signer)
            except (ValueError, TypeError, LookupError):
                return None  # its own turn reports it
        if not job.paced:
            self._pace(job)
        if (job.due and job.due > monotonic()) or (mail.smtputf8 and not lane.smtputf8):
            return None
        return job, mail

    def _pace(self, job: _Job) -> None:
        """Ask the pacer for this message's turn (once, before it is first sent)."""
        pacer = self.channel.pacer
        delay = pacer.reserve("email") if pacer is not None else 0.0
        job.paced = True
        job.due = monotonic() + delay if delay > 0 else 0.0


def _lost(lane: _Lane, pending: deque[_Job]) -> None:
    """The connection is gone: messages announced on it must be announced again."""
    lane.drop()
    for held in pending:
        held.announced = False
