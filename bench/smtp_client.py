"""How much of a worker's CPU the SMTP client costs per email, against the floor.

    .venv/bin/python bench/smtp_client.py                   # 20,000 emails per way, 3 rounds
    .venv/bin/python bench/smtp_client.py --emails 50000 --rounds 5

Sends the same fan-out envelopes (one layout, each reader's own link and To, about 6 KiB) to
Postfix's smtp-sink (its own process, so its CPU is not counted) and prints this process's
CPU µs per email (user and system) and context switches per email, for each way:

- smtp: notifier's SmtpChannel over SMTP_CONNECTIONS connections, pipelined (RFC 2920), all
  driven from the caller's thread (what the workers use);
- floor: the same bytes from a minimal single-threaded client, one poll over the same number
  of connections, no reply checking beyond the code, no dot-stuffing (nothing a real client
  could do without): what any Python client must at least spend.

The figures it printed, and the choice it informed, are in README ("Fan-out at news scale").
"""

from __future__ import annotations

import argparse
import resource
import selectors
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.sinks import SmtpSink  # noqa: E402
from notifier.channels.smtp import SmtpChannel, _dot_stuffed  # noqa: E402
from notifier.config import Settings  # noqa: E402
from notifier.delivery.email_layout import EmailLayout  # noqa: E402
from notifier.messages import EmailEnvelope, Outcome, RenderedEmail, SendResult  # noqa: E402

MAIL_FROM = "Aze.Media <news@aze.test>"
ACCEPTED = SendResult.sent()
SLOTS = ["NOTIFIERSLOT0UNSUBSCRIBEURL"]


def envelopes(count: int) -> list[EmailEnvelope]:
    """What the fan-out hands the channel: one rendered layout, each reader's link filled in."""
    paragraph = "<p>Ərəfədə xəbərlər: the day's story, as a reader gets it in full.</p>\n"
    rendered = RenderedEmail(
        "ignored@example.com",
        "Ərəfədə ə ğ ş ı — Новости",
        "Plain body\n" * 60 + "Unsubscribe: NOTIFIERSLOT0UNSUBSCRIBEURL\n",
        paragraph * 40 + '<a href="NOTIFIERSLOT0UNSUBSCRIBEURL">Unsubscribe</a>',
        {"List-Unsubscribe": "<NOTIFIERSLOT0UNSUBSCRIBEURL>"},
    )
    layout = EmailLayout.prepare(rendered, MAIL_FROM, SLOTS)
    return [
        layout.envelope(f"reader{i}@example.com", [f"https://aze.test/u/{i}?t=abcdef{i}"])
        for i in range(count)
    ]


def _usage() -> tuple[float, float, int]:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime, used.ru_stime, used.ru_nvcsw + used.ru_nivcsw


def smtp_way(url: str, mails: list[EmailEnvelope], connections: int) -> None:
    channel = SmtpChannel(url, 30.0, connections=connections)
    session = channel.open()
    try:
        results = [result for _, result in session.send_many(enumerate(mails))]
    finally:
        session.close()
    if any(r.outcome is not Outcome.SENT for r in results):
        raise SystemExit("the sink refused messages: " + repr(results[:3]))


def floor_way(port: int, mails: list[EmailEnvelope], connections: int) -> None:
    session = FloorClient(port, connections).open()
    try:
        sent = sum(1 for _ in session.send_many(enumerate(mails)))
    finally:
        session.close()
    if sent != len(mails):
        raise SystemExit(f"the floor client sent {sent} of {len(mails)}")


class FloorClient:
    """The floor as a channel (`open()`, then `send_many`), so bench/send_path.py can put it
    where SmtpChannel goes and measure the send path around it: one poll over `connections`
    connections in the caller's thread, MAIL, RCPT and DATA pipelined with the previous
    message's data, every reply taken as success. Not a client to send with: no reply
    checking, no reconnecting, no TLS, a blocking write."""

    name = "email"

    def __init__(self, port: int, connections: int) -> None:
        self.port = port
        self.connections = connections

    def open(self) -> _FloorSession:
        return _FloorSession(self.port, self.connections)


class _FloorSession:
    def __init__(self, port: int, connections: int) -> None:
        self.lanes = []
        for _ in range(connections):
            sock = socket.create_connection(("127.0.0.1", port))
            reader = sock.makefile("rb")
            reader.readline()
            sock.sendall(b"EHLO bench\r\n")
            while reader.readline()[3:4] != b" ":
                pass
            sock.setblocking(False)
            self.lanes.append(sock)

    def close(self) -> None:
        for sock in self.lanes:
            sock.close()

    def send_many(self, messages: Iterable[tuple[int, EmailEnvelope]]):
        source = iter(messages)

        def take() -> tuple[int, bytes, bytes] | None:  # key, payload, MAIL+RCPT+DATA
            key, mail = next(source, (None, None))
            if mail is None:
                return None
            group = f"MAIL FROM:<{mail.mail_from}>\r\nRCPT TO:<{mail.to}>\r\nDATA\r\n"
            return key, _dot_stuffed(mail.data), group.encode()

        selector = selectors.DefaultSelector()
        unread: dict[socket.socket, bytes] = {}
        replies: dict[socket.socket, int] = {}
        current: dict[socket.socket, tuple[int, bytes, bytes] | None] = {}
        in_data: dict[socket.socket, int] = {}
        in_flight = 0
        for sock in self.lanes:
            selector.register(sock, selectors.EVENT_READ)
            unread[sock], replies[sock] = b"", 0
            current[sock] = job = take()
            if job is not None:
                sock.sendall(job[2])
                in_flight += 1
        done: list[int] = []
        while in_flight:
            for selected, _ in selector.select():
                sock = selected.fileobj
                *lines, unread[sock] = (unread[sock] + sock.recv(65536)).split(b"\r\n")
                for line in lines:
                    if line[3:4] == b"-":
                        continue
                    replies[sock] += 1
                    if replies[sock] % 4 == 3:  # 354 after MAIL, RCPT, DATA: the data, next group
                        key, data, _ = current[sock]
                        in_data[sock] = key
                        current[sock] = following = take()
                        if following is not None:
                            data += following[2]
                            in_flight += 1
                        sock.sendall(data)
                    elif replies[sock] % 4 == 0:
                        in_flight -= 1
                        done.append(in_data.pop(sock))
            for key in done:
                yield key, ACCEPTED
            done.clear()
        selector.close()


def measure(way, *args) -> tuple[float, float, float]:
    count = len(args[1])
    user, system, switches = _usage()
    way(*args)
    user2, system2, switches2 = _usage()
    return ((user2 - user) * 1e6 / count, (system2 - system) * 1e6 / count,
            (switches2 - switches) / count)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=Settings.smtp_connections)
    args = parser.parse_args(argv)
    mails = envelopes(args.emails)
    size = statistics.mean(len(m.data) for m in mails[:100])
    with tempfile.TemporaryDirectory() as tmp:
        sink = SmtpSink(Path(tmp), kind="smtp-sink", say=lambda *_: None).start()
        try:
            figures: dict[str, list[tuple[float, float, float]]] = {"smtp": [], "floor": []}
            for _ in range(args.rounds):
                figures["smtp"].append(measure(smtp_way, sink.url, mails, args.connections))
                figures["floor"].append(measure(floor_way, sink.port, mails, args.connections))
                time.sleep(0.5)
        finally:
            sink.stop()
    print(
        f"bench/smtp_client.py: {args.emails:,} emails of {size / 1024:.1f} KiB over "
        f"{args.connections} connections to smtp-sink, median of {args.rounds} rounds"
    )
    print(f"{'way':<8} {'CPU µs/email':>13} {'user':>7} {'system':>7} {'switches/email':>15}")
    for name, rows in figures.items():
        user = statistics.median(r[0] for r in rows)
        system = statistics.median(r[1] for r in rows)
        switches = statistics.median(r[2] for r in rows)
        print(f"{name:<8} {user + system:>13.1f} {user:>7.1f} {system:>7.1f} {switches:>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
