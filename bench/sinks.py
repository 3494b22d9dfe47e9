"""Local sinks that accept mail and web pushes the way real servers do, and count them.

SMTP: Postfix's `smtp-sink` (Debian package postfix), the standard SMTP benchmark sink: an
event-driven C server that announces PIPELINING and throws the mail away. We run it with
`-c` (a running counter on stdout, updated when "." is received: the moment a message is
accepted) and `-D <fifo>` (each transaction's dump, whose `X-Rcpt-Args` line names the
recipient), so we know when each message was accepted and can count every recipient. When
`smtp-sink` is missing it is installed with apt-get (as root), else an aiosmtpd server that
speaks the same counter and dump formats stands in (`python bench/sinks.py smtp`).

Push: `python bench/sinks.py push`, a process of its own (its CPU shows apart from the
bench's), a small HTTP/1.1 keep-alive server on 127.0.0.1 written on raw asyncio. It answers
`201 Created` to `POST /push/<id>` as push services do, after checking what they check:
a valid VAPID token for its own origin signed by the expected key (each distinct token is
verified once), TTL, `Content-Encoding: aes128gcm`, a body of at most 4096 bytes. It
decrypts the first push and every `--decrypt-every`th with the subscription's keys to prove
the payloads are real (a failure is counted, not refused: a push service cannot decrypt),
counts accepted pushes per endpoint id (duplicates, lost) and reports on `GET /stats`;
`POST /phase?ids=N` starts a new count.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EMAIL_DOMAIN = "bench.test"
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032  # Linux fcntl
# Between two reads of smtp-sink's counter and dump, the readers pause this long, so that
# one wake-up takes in what a few dozen messages wrote. Woken for every message, as they
# were, they (with the sampler's PSS reads, see harness.Sampler) cost the bench 48-55 µs
# of CPU per email, now 15-17 µs (bench/fanout.py --readers 300000, two runs each): CPU
# the service under test lacked, on a VM where every wake-up is dear. The pipes hold far
# more than arrives meanwhile (the counter's 64 KiB is 2,000 messages, the dump's 1 MiB
# about 150), and a message's time, read with its counter line, is at most this much late.
READ_PAUSE_SECONDS = 0.005


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def reader_email(n: int) -> str:
    """The address of email reader n (1-based): the sink maps it back to n."""
    return f"r{n}@{EMAIL_DOMAIN}"


# ---------------------------------------------------------------------------------------
# SMTP sink
# ---------------------------------------------------------------------------------------


def find_smtp_sink(install: bool = True, say=print) -> str | None:
    """Path of Postfix's smtp-sink: on PATH, in /usr/sbin, or installed now (root + apt)."""
    found = shutil.which("smtp-sink") or next(
        (p for p in ("/usr/sbin/smtp-sink", "/usr/lib/postfix/smtp-sink") if os.access(p, os.X_OK)),
        None,
    )
    if found or not install:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        say("smtp-sink not found (it comes with Debian's postfix package; not root or no apt)")
        return None
    say("smtp-sink not found: installing Debian's postfix package (apt-get install postfix)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    selections = (
        "postfix postfix/main_mailer_type select No configuration\n"
        "postfix postfix/mailname string localhost\n"
    )
    try:
        subprocess.run(["debconf-set-selections"], input=selections.encode(), env=env,
                       check=False, capture_output=True)  # fmt: skip
        command = ["apt-get", "install", "-y", "--no-install-recommends", "postfix"]
        result = subprocess.run(command, env=env, capture_output=True)
        if result.returncode != 0:  # package lists may be missing in a fresh container
            subprocess.run(["apt-get", "update"], env=env, capture_output=True)
            result = subprocess.run(command, env=env, capture_output=True)
        if result.returncode != 0:
            say(f"apt-get install postfix failed: {result.stderr.decode()[-500:]}")
    except OSError as error:
        say(f"could not run apt-get: {error}")
    return shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if os.access("/usr/sbin/smtp-sink", os.X_OK) else None
    )


@dataclass
class SmtpPhase:
    """What the SMTP sink accepted since the phase started."""

    ids: int  # readers 1..ids are the expected recipients
    base: int  # sink counter when the phase started
    accepted: int = 0
    first: float | None = None  # time.monotonic() of the first / last accepted message
    last: float | None = None
    per_id: bytearray = field(default_factory=bytearray)
    duplicates: int = 0
    unknown: int = 0
    dumped: int = 0  # recipients read from the dump (lags `accepted` a little)
    dump_bytes: int = 0  # what smtp-sink dumped: the messages plus its few headers each

    def lost(self, wanted: int | None = None) -> int:
        wanted = self.ids if wanted is None else wanted
        return self.per_id[1 : wanted + 1].count(0)


_COUNTER = re.compile(rb"mesg=(\d+)")
_RCPT = re.compile(rb"X-Rcpt-Args: <([^>\r\n]*)>")
_TRANSACTION = b"X-Client-Addr: "  # smtp-sink's first dump header of each transaction
_READER = re.compile(rf"r(\d+)@{re.escape(EMAIL_DOMAIN)}".encode())


class SmtpSink:
    """smtp-sink (or the aiosmtpd stand-in) on 127.0.0.1, its counter and dump read here."""

    def __init__(self, workdir: Path, install: bool = True, say=print, kind: str = "auto",
                 inspect: Callable[[bytes], None] | None = None):  # fmt: skip
        """kind: "auto" (smtp-sink, else the stand-in), "smtp-sink" (or fail), "aiosmtpd".
        inspect: called with each transaction as dumped (smtp-sink's X- headers, then the
        message as received, LF line ends), in the dump reader's thread; the aiosmtpd
        stand-in dumps no message, so it cannot inspect."""
        self.workdir = workdir
        self.say = say
        self.binary = None if kind == "aiosmtpd" else find_smtp_sink(install, say)
        if kind == "smtp-sink" and self.binary is None:
            raise RuntimeError(
                "Postfix's smtp-sink is not installed (Debian: apt-get install postfix)"
            )
        if inspect is not None and self.binary is None:
            raise RuntimeError("only Postfix's smtp-sink dumps the messages to inspect")
        self.process: subprocess.Popen | None = None
        self.port = 0
        self.total = 0  # messages accepted since the sink started
        self.lock = threading.Lock()
        self.phase = SmtpPhase(ids=0, base=0)
        self._threads: list[threading.Thread] = []
        self._fifo_fd: int | None = None
        self._fifo_dir: Path | None = None
        self._pipe_bytes = 0
        self._stopping = False
        self.inspect = inspect
        self._transaction = b""  # the dump of the transaction being received (inspect)

    @property
    def description(self) -> str:
        if self.binary:
            return f"Postfix smtp-sink ({self.binary}) on 127.0.0.1:{self.port}"
        return f"aiosmtpd stand-in (bench/sinks.py smtp, own process) on 127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpSink:
        from tests.support.smtp import free_port

        # Not in our private directory: smtp-sink drops root privileges to nobody, who must
        # reach the FIFO and write each transaction's (unlinked) spool file next to it; in
        # memory (/dev/shm) where there is one.
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        fifo_dir = self._fifo_dir = Path(tempfile.mkdtemp(prefix="notifier-smtp-sink-", dir=shm))
        fifo_dir.chmod(0o777)
        fifo = fifo_dir / "dump"
        os.mkfifo(fifo, 0o666)
        fifo.chmod(0o666)
        # Read and write: we never see end-of-file between transactions, and smtp-sink's
        # open never blocks waiting for a reader.
        self._fifo_fd = os.open(fifo, os.O_RDWR)
        with contextlib.suppress(OSError):  # a bigger pipe: smtp-sink waits on us less
            fcntl.fcntl(self._fifo_fd, F_SETPIPE_SZ, 1 << 20)
        self._pipe_bytes = fcntl.fcntl(self._fifo_fd, F_GETPIPE_SZ)
        for _ in range(5):
            self.port = free_port()
            if self.binary:
                command = [self.binary, "-c", "-D", str(fifo)]
                if os.geteuid() == 0:
                    command += ["-u", "nobody"]
                command += [f"127.0.0.1:{self.port}", "4096"]
            else:
                command = [sys.executable, str(Path(__file__).resolve()), "smtp",
                           "--port", str(self.port), "--dump", str(fifo)]  # fmt: skip
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
            )
            if self._listening():
                break
            error = self.process.stderr.read().decode(errors="replace")
            self.process.wait()
            self.say(f"SMTP sink did not start on port {self.port}: {error.strip()[-300:]}")
        else:
            raise RuntimeError("could not start an SMTP sink")
        for target in (self._read_counter, self._read_dump):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _listening(self, timeout: float = 10.0) -> bool:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.recv(100)  # the greeting
                    sock.sendall(b"QUIT\r\n")
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def _read_counter(self) -> None:
        """`-c` prints "sess=N quit=N mesg=N\\r" each time "." is received."""
        fd = self.process.stdout.fileno()
        pending = b""
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                return
            if not data:
                return
            now = time.monotonic()
            pending += data
            time.sleep(READ_PAUSE_SECONDS)
            *complete, pending = pending.split(b"\r")
            counts = [int(m[1]) for chunk in complete if (m := _COUNTER.search(chunk))]
            if not counts:
                continue
            with self.lock:
                if counts[-1] > self.total:
                    self.total = counts[-1]
                    phase = self.phase
                    accepted = self.total - phase.base
                    if accepted > phase.accepted:
                        phase.accepted = accepted
                        if phase.first is None:
                            phase.first = now
                        phase.last = now

    def _read_dump(self) -> None:
        """The dump: every transaction starts with smtp-sink's headers, X-Rcpt-Args among
        them, in the first write of that transaction (so never cut by another's data)."""
        tail = b""
        while not self._stopping:
            try:
                data = os.read(self._fifo_fd, 1 << 20)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.phase.dump_bytes += len(data)
            if self._pipe_bytes >= 1 << 20:  # else a pause could fill it and hold up smtp-sink
                time.sleep(READ_PAUSE_SECONDS)
            data = tail + data
            cut = data.rfind(b"\n") + 1
            data, tail = data[:cut], data[cut:]
            if len(tail) > 1 << 16:  # no newline for long: nothing of ours can hide in it
                tail = tail[-512:]
            if self.inspect is not None:
                self._inspect(data)
            recipients = _RCPT.findall(data)
            if not recipients:
                continue
            with self.lock:
                phase = self.phase
                for address in recipients:
                    phase.dumped += 1
                    match = _READER.fullmatch(address)
                    n = int(match[1]) if match else 0
                    if 0 < n < len(phase.per_id):
                        if phase.per_id[n]:
                            phase.duplicates += 1
                        phase.per_id[n] = min(phase.per_id[n] + 1, 255)
                    else:
                        phase.unknown += 1

    def _inspect(self, data: bytes) -> None:
        """Hand each complete transaction to `inspect`: one ends where the next one's first
        smtp-sink header starts (a message line cannot: ours are base64 or headers)."""
        *complete, self._transaction = (self._transaction + data).split(_TRANSACTION)
        for transaction in complete:
            if transaction:
                self.inspect(_TRANSACTION + transaction)

    def finish_inspection(self, timeout: float = 10.0) -> None:
        """The last transaction has no next one to end it: once the dump has every accepted
        recipient and has been quiet for a moment, hand it over too."""
        self.wait_for_dump(timeout)
        time.sleep(0.5)
        with self.lock:
            last, self._transaction = self._transaction, b""
        if last and self.inspect is not None:
            self.inspect(_TRANSACTION + last)

    def new_phase(self, ids: int) -> None:
        """Count from now on, expecting readers 1..ids."""
        with self.lock:
            self.phase = SmtpPhase(ids=ids, base=self.total, per_id=bytearray(ids + 1))

    def snapshot(self) -> SmtpPhase:
        with self.lock:
            phase = self.phase
            return SmtpPhase(
                ids=phase.ids, base=phase.base, accepted=phase.accepted, first=phase.first,
                last=phase.last, per_id=phase.per_id, duplicates=phase.duplicates,
                unknown=phase.unknown, dumped=phase.dumped, dump_bytes=phase.dump_bytes,
            )  # fmt: skip

    def wait_for_dump(self, timeout: float = 10.0) -> None:
        """The dump may lag the counter by a few messages: let it catch up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.phase.dumped >= self.phase.accepted:
                    return
            time.sleep(0.05)

    def stop(self) -> None:
        self._stopping = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._fifo_fd is not None:
            os.close(self._fifo_fd)
            self._fifo_fd = None
        if self._fifo_dir is not None:
            shutil.rmtree(self._fifo_dir, ignore_errors=True)
            self._fifo_dir = None

    def died(self) -> str | None:
        """Why the sink process ended, if it did."""
        if self.process is None or self.process.poll() is None:
            return None
        error = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
        return f"SMTP sink exited with {self.process.returncode}: {error.strip()[-500:]}"


def smtp_main(args: argparse.Namespace) -> None:
    """aiosmtpd stand-in for smtp-sink: same `-c` counter on stdout, same dump headers."""
    from aiosmtpd.smtp import SMTP

    dump = os.open(args.dump, os.O_WRONLY | os.O_APPEND) if args.dump else None
    count = 0

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            nonlocal count
            count += 1
            if dump is not None:
                lines = "".join(f"X-Rcpt-Args: <{r}>\n" for r in envelope.rcpt_tos)
                os.write(dump, f"X-Client-Addr: 127.0.0.1\n{lines}\n".encode())
            sys.stdout.buffer.write(f"sess=0 quit=0 mesg={count}\r".encode())
            sys.stdout.buffer.flush()
            return "250 2.0.0 Ok: queued"

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        handler = Handler()
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="aiosmtpd-sink", data_size_limit=0),
            "127.0.0.1", args.port, backlog=4096,
        )  # fmt: skip
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


# ---------------------------------------------------------------------------------------
# Push sink
# ---------------------------------------------------------------------------------------


@dataclass
class PushStats:
    ids: int = 0
    accepted: int = 0
    first: float | None = None
    last: float | None = None
    duplicates: int = 0
    unknown: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    decrypted: int = 0
    decrypt_failed: int = 0
    titles: list[str] = field(default_factory=list)
    per_id: bytearray = field(default_factory=bytearray)

    def as_json(self, connections: int, tokens: int, requests: int) -> dict:
        return {
            "ids": self.ids, "accepted": self.accepted, "first": self.first, "last": self.last,
            "duplicates": self.duplicates, "unknown": self.unknown,
            "lost": self.per_id[1:].count(0), "refused": self.refused,
            "decrypted": self.decrypted, "decrypt_failed": self.decrypt_failed,
            "titles": self.titles, "connections": connections, "vapid_tokens": tokens,
            "requests": requests,
        }  # fmt: skip


class PushServer:
    """The push service's state, shared by every connection (one event loop, no locks)."""

    def __init__(self, origin: str, vapid_key: str | None, pool: list, decrypt_every: int):
        self.origin = origin
        self.vapid_key = vapid_key
        self.pool = pool  # [(private key, auth secret)]: subscription n uses pool[n % len]
        self.decrypt_every = max(1, decrypt_every)
        self.tokens: dict[str, str | None] = {}  # Authorization header -> refusal or None
        self.stats = PushStats()
        self.connections = 0
        self.requests = 0

    def refuse(self, status: int, reason: str) -> tuple[int, bytes, dict]:
        key = f"{status} {reason}"
        self.stats.refused[key] = self.stats.refused.get(key, 0) + 1
        return status, reason.encode(), {"Content-Type": "text/plain"}

    def handle(self, method: str, target: str, headers: dict, body: bytes):
        self.requests += 1
        parts = urlsplit(target)
        path = parts.path
        if method == "POST" and path.startswith("/push/"):
            return self.push(path[6:], headers, body)
        if method == "GET" and path == "/stats":
            data = self.stats.as_json(self.connections, len(self.tokens), self.requests)
            return 200, json.dumps(data).encode(), {"Content-Type": "application/json"}
        if method == "POST" and path == "/phase":
            old = self.stats.as_json(self.connections, len(self.tokens), self.requests)
            ids = int(parse_qs(parts.query).get("ids", ["0"])[0])
            self.stats = PushStats(ids=ids, per_id=bytearray(ids + 1))
            return 200, json.dumps(old).encode(), {"Content-Type": "application/json"}
        return 404, b"not found", {"Content-Type": "text/plain"}

    def push(self, sub_id: str, headers: dict, body: bytes):
        from tests.support.push_service import Refused, verify_vapid

        n = int(sub_id) if sub_id.isascii() and sub_id.isdigit() else 0
        stats = self.stats
        if not 0 < n < len(stats.per_id):
            stats.unknown += 1
            return self.refuse(404, "no such subscription")
        authorization = headers.get("authorization", "")
        if authorization not in self.tokens:
            try:
                verify_vapid(authorization, self.origin, self.vapid_key)
                self.tokens[authorization] = None
            except Refused as refused:
                self.tokens[authorization] = f"{refused.status} {refused.reason}"
        problem = self.tokens[authorization]
        if problem is not None:
            status, _, reason = problem.partition(" ")
            return self.refuse(int(status), reason)
        ttl = headers.get("ttl", "")
        if not (ttl.isascii() and ttl.isdigit()):
            return self.refuse(400, "TTL header must be an integer >= 0")
        if headers.get("content-encoding", "").lower() != "aes128gcm":
            return self.refuse(415, "Content-Encoding must be aes128gcm")
        if not body or len(body) > 4096:
            return self.refuse(413, "payload missing or larger than 4096 bytes")
        if stats.accepted % self.decrypt_every == 0:
            self.decrypt(n, body)  # a real push service cannot decrypt: counted, not refused
        now = time.monotonic()
        stats.accepted += 1
        if stats.first is None:
            stats.first = now
        stats.last = now
        if stats.per_id[n]:
            stats.duplicates += 1
        stats.per_id[n] = min(stats.per_id[n] + 1, 255)
        return 201, b"", {"Location": f"{self.origin}/m/{n}-{stats.accepted}", "TTL": ttl}

    def decrypt(self, n: int, body: bytes) -> bool:
        import http_ece

        key, auth = self.pool[n % len(self.pool)]
        try:
            plain = http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm")
            title = json.loads(plain)["title"]
        except Exception:
            self.stats.decrypt_failed += 1
            return False
        self.stats.decrypted += 1
        if title not in self.stats.titles and len(self.stats.titles) < 10:
            self.stats.titles.append(title)
        return True


REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 411: "Length Required", 413: "Payload Too Large",
           415: "Unsupported Media Type"}  # fmt: skip


class PushProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and pipelining; bodies by Content-Length only."""

    def __init__(self, server: PushServer) -> None:
        self.server = server
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.server.connections += 1

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > 65536:
                    self.transport.close()
                return
            head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
            method, target, version = [*head[0].split(" "), "", "", ""][:3]
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            declared = headers.get("content-length", "0")
            if "transfer-encoding" in headers or not declared.isdigit():
                self.respond(411, b"send Content-Length", {}, close=True)
                return
            length = int(declared)
            if len(buffer) < end + 4 + length:
                return
            body = bytes(buffer[end + 4 : end + 4 + length])
            del buffer[: end + 4 + length]
            status, payload, extra = self.server.handle(method, target, headers, body)
            close = headers.get("connection", "").lower() == "close" or version != "HTTP/1.1"
            self.respond(status, payload, extra, close)
            if close:
                return

    def respond(self, status: int, payload: bytes, extra: dict, close: bool = False) -> None:
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}",
                 f"Content-Length: {len(payload)}"]  # fmt: skip
        lines += [f"{k}: {v}" for k, v in extra.items()]
        if close:
            lines.append("Connection: close")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        if close:
            self.transport.close()


def load_key_pool(path: Path) -> list:
    from cryptography.hazmat.primitives.asymmetric import ec

    pool = []
    for entry in json.loads(path.read_text()):
        key = ec.derive_private_key(int.from_bytes(unb64url(entry["d"])), ec.SECP256R1())
        pool.append((key, unb64url(entry["auth"])))
    return pool


def make_key_pool(size: int) -> tuple[list[dict], list[str], list[str]]:
    """`size` browser key pairs: (entries for the sink, p256dh list, auth list)."""
    import secrets

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    entries, p256dh, auth = [], [], []
    for _ in range(size):
        key = ec.generate_private_key(ec.SECP256R1())
        secret = secrets.token_bytes(16)
        point = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        entries.append({"d": b64url(key.private_numbers().private_value.to_bytes(32, "big")),
                        "auth": b64url(secret)})  # fmt: skip
        p256dh.append(b64url(point))
        auth.append(b64url(secret))
    return entries, p256dh, auth


def push_main(args: argparse.Namespace) -> None:
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    origin = f"http://127.0.0.1:{port}"
    pool = load_key_pool(Path(args.keys))
    server = PushServer(origin, args.vapid_key or None, pool, args.decrypt_every)
    server.stats = PushStats(ids=args.ids, per_id=bytearray(args.ids + 1))

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(lambda: PushProtocol(server), sock=sock, backlog=4096)
        print(f"listening {origin}", flush=True)
        async with listener:
            await listener.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


class PushSink:
    """Runs `bench/sinks.py push` as a process of its own and talks to it over HTTP."""

    def __init__(self, workdir: Path, pool: list[dict], vapid_public_key: str,
                 decrypt_every: int = 1000) -> None:  # fmt: skip
        self.keys = workdir / "push-keys.json"
        self.keys.write_text(json.dumps(pool))
        self.vapid_public_key = vapid_public_key
        self.decrypt_every = decrypt_every
        self.process: subprocess.Popen | None = None
        self.origin = ""
        self.log = workdir / "push-sink.log"
        self._http = None

    description = "bench/sinks.py push (HTTP/1.1 keep-alive, raw asyncio, own process)"

    def start(self) -> PushSink:
        import requests

        command = [sys.executable, str(Path(__file__).resolve()), "push",
                   "--keys", str(self.keys), "--vapid-key", self.vapid_public_key,
                   "--decrypt-every", str(self.decrypt_every)]  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, start_new_session=True, cwd=ROOT
            )
        line = self.process.stdout.readline().decode().strip()
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"push sink did not start: {line} {self.log.read_text()[-2000:]}")
        self.origin = line.split(" ", 1)[1]
        self._http = requests.Session()
        self._http.trust_env = False
        return self

    def endpoint(self, sub_id: int) -> str:
        return f"{self.origin}/push/{sub_id}"

    def stats(self) -> dict:
        return self._http.get(f"{self.origin}/stats", timeout=10).json()

    def new_phase(self, ids: int) -> dict:
        return self._http.post(f"{self.origin}/phase?ids={ids}", timeout=10).json()

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    push = commands.add_parser("push", help="run the push sink (prints 'listening <origin>')")
    push.add_argument("--port", type=int, default=0)
    push.add_argument("--keys", required=True, help="JSON key pool made by make_key_pool")
    push.add_argument("--vapid-key", default="", help="expected VAPID public key (base64url)")
    push.add_argument("--ids", type=int, default=0, help="endpoint ids 1..N to expect")
    push.add_argument("--decrypt-every", type=int, default=1000)
    smtp = commands.add_parser("smtp", help="aiosmtpd stand-in for Postfix's smtp-sink")
    smtp.add_argument("--port", type=int, required=True)
    smtp.add_argument("--dump", default="", help="file or FIFO for the recipients")
    args = parser.parse_args(argv)
    if args.command == "push":
        push_main(args)
    else:
        smtp_main(args)


if __name__ == "__main__":
    main()
