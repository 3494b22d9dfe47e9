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
SMTP connections, each driven by a thread of its own with blocking smtplib sockets (the
caller's thread pulls the messages and hands out the results). When the server offers
PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in one write, and the end of one message's
data goes out in the same write as the next message's MAIL, RCPT and DATA: one round trip
per message. A connection the server refuses while others serve steps aside and hands its
messages to them (a server that allows us fewer connections than configured).

With a DkimSigner every message is signed once, when its wire bytes are made (a message tried
again after a dropped connection keeps its signature).
"""

from __future__ import annotations

import copy
import email.generator
import email.policy
import email.utils
import functools
import io
import os
import queue
import re
import smtplib
import socket
import ssl
import struct
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from email.message import EmailMessage
from time import monotonic
from urllib.parse import unquote, urlsplit

from notifier.channels.dkim import DkimSigner
from notifier.channels.pacing import Pacer
from notifier.messages import EmailEnvelope, Outcome, SendResult

# The default of SMTP_LOOKAHEAD: how many messages `send_many` pulls ahead of the results, per
# connection: enough that a connection always has its next message at hand to pipeline, few
# enough that a caller that stops early has little in flight. Every one of them may have been
# accepted by the server while the caller is busy (recording), before it is handed back.
LOOKAHEAD_PER_CONNECTION = 4

_NEWLINES = re.compile(rb"\r\n|\r|\n")
_MAX_REPLY_LINE = 8192  # a longer reply line is an error, as smtplib has it (its _MAXLINE)
_STOP = object()


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return f"SMTP {code} {' '.join(text.split())}"


class SmtpChannel:
    """SMTP_URL: smtp://[user:pass@]host:port, smtps://… (TLS), smtp+starttls://…

    `connections`: how many SMTP connections `send_many` uses at once (each opened on first
    use and kept for the session). `pacer`: asked `reserve("email")` before each message is
    sent, from the sending thread, which then sleeps the answer (so it must be thread-safe).
    `keepalive_seconds`: a closed session's connections wait this long for the next session
    of this channel (the next batch), so a TLS handshake and login are not paid per batch;
    0 closes them with the session. A connection the server dropped meanwhile is reopened
    on first use like any dropped connection. `signer`: DKIM-signs every message sent.
    `lookahead`: messages pulled per connection ahead of the results handed back, so at
    most `lookahead * connections` accepted messages are not yet the caller's to record.
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
    __slots__ = ("announced", "attempt", "delay", "key", "mail", "message", "paced")

    def __init__(self, key: int, message: EmailEnvelope | EmailMessage) -> None:
        self.key = key
        self.message = message
        self.mail: _Mail | None = None
        self.attempt = 1
        self.paced = False  # the pacer was asked for this message
        self.delay = 0.0  # seconds still to wait before sending it
        self.announced = False  # its MAIL/RCPT/DATA already went out on the connection


class _Closing(Exception):
    """The server said 421: it is closing this connection."""

    def __init__(self, code: int, message: bytes) -> None:
        super().__init__(code, message)
        self.detail = _reply(code, message)


class _Lane:
    """One SMTP connection of a session, and what its server offers."""

    def __init__(self, channel: SmtpChannel) -> None:
        # Weak: kept connections wait in their channel's pool, and a dropped channel must
        # still be collectable so its pool is closed.
        self._channel = weakref.ref(channel)
        self.client: smtplib.SMTP | None = None
        self.pipelining = False
        self.smtputf8 = False
        self.eightbitmime = False
        self.retired: str | None = None  # refused us while another connection served

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
        _timeouts_in_the_kernel(client, channel.timeout)
        self.client = client
        self.pipelining = client.has_extn("pipelining")
        self.smtputf8 = client.has_extn("smtputf8")
        self.eightbitmime = client.has_extn("8bitmime")
        return None

    def drop(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            finally:
                self.client = None

    def quit(self) -> None:
        if self.client is not None:
            try:
                self.client.quit()
            except (smtplib.SMTPException, OSError):
                pass  # the messages are already accepted; a failed QUIT changes nothing
            finally:
                self.drop()

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

    def _connected(self) -> smtplib.SMTP:
        if self.client is None:  # dropped: to the caller, like any connection lost
            raise smtplib.SMTPServerDisconnected("not connected")
        return self.client

    def reply(self) -> tuple[int, bytes]:
        code, message = _read_reply(self._connected())
        if code == 421:
            raise _Closing(code, message)
        return code, message

    def transact(
        self, job: _Job, mail: _Mail, take_next: Callable[[], tuple[_Job, _Mail] | None]
    ) -> SendResult:
        """One mail transaction (`mail`: the job's, prepared). Raises _Closing (421) or
        OSError when the connection fails; `take_next` may hand over the next message, whose
        commands then follow the data."""
        if mail.smtputf8 and not self.smtputf8:
            detail = "a non-ASCII address needs SMTPUTF8, which the SMTP server does not offer"
            return SendResult(Outcome.FAILED, detail)
        client = self._connected()
        commands = self.commands(mail)
        if self.pipelining:  # RFC 2920: the whole group in one write, then every reply
            if not job.announced:
                client.send(b"".join(commands))
            job.announced = False
            replies = [self.reply() for _ in commands]
        else:
            client.send(commands[0])
            replies = [self.reply()]
            if _ok(replies[0][0]):
                for command in commands[1:-1]:
                    client.send(command)
                    replies.append(self.reply())
                if any(_ok(code) for code, _ in replies[1:]):
                    client.send(commands[-1])
                    replies.append(self.reply())
        (mail_code, mail_reply), rcpt_replies = replies[0], replies[1 : len(commands) - 1]
        data_code, data_reply = replies[-1] if len(replies) == len(commands) else (0, b"")
        accepted = any(_ok(code) for code, _ in rcpt_replies)
        if data_code == 354 and not (_ok(mail_code) and accepted):
            self.drop()  # a server that wants data for a refused transaction: feed it nothing
        if not _ok(mail_code):
            return SendResult(Outcome.RETRY, _reply(mail_code, mail_reply))
        refused = [(code, reply) for code, reply in rcpt_replies if not _ok(code)]
        if not accepted:
            self.reset()
            return _refusal(*refused[0])
        if data_code != 354:
            self.reset()
            outcome = Outcome.FAILED if data_code >= 500 else Outcome.RETRY
            return SendResult(outcome, _reply(data_code, data_reply))
        following = take_next() if self.pipelining else None
        if following is None:
            client.send(mail.payload)
        else:  # the end of this data and the next message's group: one write
            next_job, next_mail = following
            client.send(b"".join((mail.payload, *self.commands(next_mail))))
            next_job.announced = True
        code, reply = self.reply()
        if not _ok(code):
            return SendResult(Outcome.FAILED if code >= 500 else Outcome.RETRY, _reply(code, reply))
        return _refusal(*refused[0]) if refused else _ACCEPTED

    def reset(self) -> None:
        """RSET after a transaction that stopped before its data."""
        if self.client is None:
            return
        try:
            self.client.send(b"RSET\r\n")
            self.reply()
        except (_Closing, smtplib.SMTPException, OSError):
            self.drop()  # the next message reconnects; this one's outcome is known


def _timeouts_in_the_kernel(client: smtplib.SMTP, seconds: float) -> None:
    """A connected lane's timeout kept by the kernel (SO_RCVTIMEO, SO_SNDTIMEO) rather than
    by Python: a socket with a Python timeout polls before every read and write, two more
    system calls a message, each a hand-over of the GIL between the connection's thread and
    the sending thread. A read or write that waits longer fails (EAGAIN) instead of timing
    out, and is a lost connection like any other (see _no_reply).

    Plain connections only: Python's TLS layer on a blocking socket reads again after the
    kernel's EAGAIN, so a silent server would hold a TLS connection forever. TLS keeps
    Python's timeout."""
    sock = client.sock
    if sock is None or isinstance(sock, ssl.SSLSocket) or seconds <= 0:  # 0: the kernel's "never"
        return
    whole = int(seconds)
    interval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, interval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, interval)
    sock.settimeout(None)


def _no_reply(client: smtplib.SMTP) -> smtplib.SMTPServerDisconnected:
    """Why a read found nothing: the server closed the connection, or it did not answer
    within the timeout (the kernel's receive timeout ended the read: nothing is waiting)."""
    sock = client.sock
    reason = "Connection unexpectedly closed"
    if sock is not None and not isinstance(sock, ssl.SSLSocket):  # TLS reads cannot peek
        try:
            sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            reason = "No reply from the SMTP server: timed out"
        except OSError:
            pass
    client.close()
    return smtplib.SMTPServerDisconnected(reason)


def _read_reply(client: smtplib.SMTP) -> tuple[int, bytes]:
    """smtplib's getreply, the same answers and errors, with less Python per line: four
    replies a message at fan-out. Reads through the connection's own buffered reader, so
    what smtplib reads itself (EHLO, QUIT) stays in step."""
    file = client.file
    if file is None:
        if client.sock is None:
            raise smtplib.SMTPServerDisconnected("please run connect() first")
        file = client.file = client.sock.makefile("rb")
    lines = []
    while True:
        try:
            line = file.readline(_MAX_REPLY_LINE + 1)
        except OSError as error:
            client.close()
            raise smtplib.SMTPServerDisconnected(
                f"Connection unexpectedly closed: {error}"
            ) from error
        if not line:
            raise _no_reply(client)
        if len(line) > _MAX_REPLY_LINE:
            client.close()
            raise smtplib.SMTPResponseException(500, "Line too long.")
        lines.append(line)
        try:
            code = int(line[:3])
        except ValueError:
            code = -1
            break
        if line[3:4] != b"-":
            break
    if len(lines) == 1:
        return code, line[4:].strip(b" \t\r\n")
    return code, b"\n".join([each[4:].strip(b" \t\r\n") for each in lines])


def _ok(code: int) -> bool:
    return 200 <= code < 300


def _refusal(code: int, reply: bytes) -> SendResult:
    outcome = Outcome.GONE if 500 <= code < 600 else Outcome.RETRY
    return SendResult(outcome, _reply(code, reply))


class _Run:
    """The shared state of one send_many call: its queues and its connections' states."""

    def __init__(self, lanes: list[_Lane]) -> None:
        self.lanes = lanes
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()  # _Job, or _STOP
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()  # lists of (key, SendResult)
        self.cancelled = False
        self.state = threading.Condition()
        self.connecting = 0

    def open(self, lane: _Lane) -> str | None:
        with self.state:
            self.connecting += 1
        try:
            return lane.open()
        finally:
            with self.state:
                self.connecting -= 1
                self.state.notify_all()

    def others_serving(self, lane: _Lane) -> bool:
        """Whether another connection serves, once every connection attempt under way has
        ended: then a server that refused `lane` (e.g. too many connections from us) is
        still usable, and `lane` should step aside rather than fail the messages."""
        with self.state:
            self.state.wait_for(lambda: self.connecting == 0)
        return any(other.client is not None for other in self.lanes if other is not lane)


_ACCEPTED = SendResult.sent()  # one for every message the server took (results are frozen)
_RETIRED = SendResult(Outcome.RETRY, "connection retired")  # internal marker, never returned


class SmtpSession:
    """Connects lazily, reconnects once after a drop, and stops trying after a refusal.

    A session is used from one thread at a time: `send` and `send_many` are not to be called
    concurrently (send_many's own threads are its business)."""

    def __init__(self, channel: SmtpChannel) -> None:
        self.channel = channel
        self.lanes = channel.take_lanes(channel.connections)
        self.unavailable: str | None = None

    def send(self, message: EmailMessage | EmailEnvelope) -> SendResult:
        job = _Job(0, message)
        return self._attempt(self._lane(), job, deque([job]), None)

    def send_many(
        self, messages: Iterable[tuple[int, EmailMessage | EmailEnvelope]]
    ) -> Iterator[tuple[int, SendResult]]:
        """Send over up to `connections` connections at once; see ChannelSession.send_many.

        Every key pulled from `messages` gets exactly one result. An exception raised by
        `messages` is raised here once the messages already pulled have their results.
        Closing this iterator early starts no further message (their keys get no result)."""
        lanes = [lane for lane in self.lanes if lane.retired is None]
        run = _Run(lanes)
        limit = self.channel.lookahead * len(lanes)
        source = iter(messages)
        threads: list[threading.Thread] = []
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
                    if not threads:  # the first message starts the connections' threads
                        threads = [self._start(lane, run) for lane in lanes]
                    run.inbox.put(_Job(key, message))
                    in_flight += 1
                if in_flight == 0:
                    break
                results = run.outbox.get()
                in_flight -= len(results)
                for key, result in results:
                    yield key, result
            done = True
        finally:
            run.cancelled = not done
            for _ in threads:
                run.inbox.put(_STOP)
            for thread in threads:
                thread.join()
        if failure is not None:
            raise failure

    def close(self) -> None:
        if self.unavailable:
            for lane in self.lanes:
                lane.quit()
        else:
            self.channel.give_back(self.lanes)

    def _lane(self) -> _Lane:
        return next((lane for lane in self.lanes if lane.retired is None), self.lanes[0])

    def _start(self, lane: _Lane, run: _Run) -> threading.Thread:
        thread = threading.Thread(
            target=self._work, args=(lane, run), name="smtp-connection", daemon=True
        )
        thread.start()
        return thread

    def _work(self, lane: _Lane, run: _Run) -> None:
        """A connection's thread: take messages, send them, hand back every result.

        Results go back in twos (half the lookahead), and at once whenever the thread is
        about to wait for a message or for the pacer: waking the sending thread for each
        result was most of the channel's context switches. A result held back is a message
        within the lookahead, so the bound on what a killed worker sends twice is the same."""
        pending: deque[_Job] = deque()  # what this connection holds; the first is current
        handed = _Handed(run, max(1, self.channel.lookahead // 2))
        while True:
            if not pending:
                try:
                    job = run.inbox.get_nowait()
                except queue.Empty:
                    handed.flush()  # before waiting: the caller may need them to go on
                    job = run.inbox.get()
                if job is _STOP:
                    handed.flush()
                    return
                pending.append(job)
            job = pending[0]
            if run.cancelled:  # the caller stopped listening: start nothing more
                if job.announced:  # its MAIL/RCPT/DATA are out: the connection is unusable
                    _lost(lane, pending)
                pending.popleft()
                continue
            try:
                result = self._attempt(lane, job, pending, run, handed)
            except Exception as error:  # a bug must cost a retry, never a lost result
                _lost(lane, pending)
                result = SendResult(Outcome.RETRY, f"SMTP send failed: {error!r}")
            if result is _RETIRED:  # hand what we hold to the connections that serve
                handed.flush()
                for held in pending:
                    run.inbox.put(held)
                return
            pending.popleft()
            handed.add(job.key, result)

    def _attempt(
        self,
        lane: _Lane,
        job: _Job,
        pending: deque[_Job],
        run: _Run | None,
        handed: _Handed | None = None,
    ) -> SendResult:
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
                job.delay = self._reserve()
                job.paced = True
            if job.delay > 0:
                if handed is not None:
                    handed.flush()  # not held back for the pacer's pause
                time.sleep(job.delay)
                job.delay = 0.0
            if lane.client is None:
                refused = run.open(lane) if run is not None else lane.open()
                if refused:
                    if run is not None and run.others_serving(lane):
                        lane.retired = refused
                        return _RETIRED
                    self.unavailable = refused
                    return SendResult(Outcome.RETRY, refused)
            try:
                return lane.transact(job, mail, lambda: self._following(lane, pending, run))
            except _Closing as error:
                detail = error.detail
            except (OSError, smtplib.SMTPException) as error:
                detail = f"SMTP connection lost: {error}"
            _lost(lane, pending)
            if job.attempt >= 2:
                return SendResult(Outcome.RETRY, detail)
            job.attempt += 1

    def _following(
        self, lane: _Lane, pending: deque[_Job], run: _Run | None
    ) -> tuple[_Job, _Mail] | None:
        """The message to pipeline after the current one's data, if one is at hand now and
        may go at once (prepared, paced without a wait, sendable on this connection)."""
        if len(pending) < 2:
            if run is None or run.cancelled:
                return None
            try:
                job = run.inbox.get_nowait()
            except queue.Empty:
                return None
            if job is _STOP:  # not while we hold a message; should it come, leave it there
                run.inbox.put(job)
                return None
            pending.append(job)
        job = pending[1]
        mail = job.mail
        if mail is None:
            try:
                mail = job.mail = _Mail.of(job.message, self.channel.signer)
            except (ValueError, TypeError, LookupError):
                return None  # its own turn reports it
        if not job.paced:
            job.delay = self._reserve()
            job.paced = True
        if job.delay > 0 or (mail.smtputf8 and not lane.smtputf8):
            return None
        return job, mail

    def _reserve(self) -> float:
        pacer = self.channel.pacer
        return pacer.reserve("email") if pacer is not None else 0.0


class _Handed:
    """A connection's results not yet handed to the sending thread, handed over `group` at
    a time or when flushed."""

    __slots__ = ("group", "results", "run")

    def __init__(self, run: _Run, group: int) -> None:
        self.run = run
        self.group = group
        self.results: list[tuple[int, SendResult]] = []

    def add(self, key: int, result: SendResult) -> None:
        self.results.append((key, result))
        if len(self.results) >= self.group:
            self.flush()

    def flush(self) -> None:
        if self.results:
            self.run.outbox.put(self.results)
            self.results = []


def _lost(lane: _Lane, pending: deque[_Job]) -> None:
    """The connection is gone: messages announced on it must be announced again."""
    lane.drop()
    for held in pending:
        held.announced = False
