"""How much of a worker's CPU the SMTP client costs per email, against the floor.

    .venv/bin/python bench/smtp_client.py                   # 20,000 emails per way, 3 rounds
    .venv/bin/python bench/smtp_client.py --emails 50000 --rounds 5

Sends the same fan-out envelopes (one layout, each reader's own link and To, about 6 KiB) to
Postfix's smtp-sink (its own process, so its CPU is not counted) and prints this process's
CPU µs per email (user and system) and context switches per email, for each way:

- smtp: notifier's SmtpChannel over SMTP_CONNECTIONS connections, pipelined (RFC 2920), one
  thread per connection (what the workers use);
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.sinks import SmtpSink  # noqa: E402
from notifier.channels.smtp import SmtpChannel, _dot_stuffed  # noqa: E402
from notifier.config import Settings  # noqa: E402
from notifier.delivery.email_layout import EmailLayout  # noqa: E402
from notifier.messages import EmailEnvelope, Outcome, RenderedEmail  # noqa: E402

MAIL_FROM = "Aze.Media <news@aze.test>"
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
    payloads = [_dot_stuffed(m.data) for m in mails]  # the wire bytes, as the real client makes
    groups = [f"MAIL FROM:<{m.mail_from}>\r\nRCPT TO:<{m.to}>\r\nDATA\r\n".encode() for m in mails]
    selector = selectors.DefaultSelector()
    lanes = []
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port))
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"EHLO bench\r\n")
        while reader.readline()[3:4] != b" ":
            pass
        sock.setblocking(False)
        lanes.append(sock)
    unread: dict[socket.socket, bytes] = {}
    replies: dict[socket.socket, int] = {}
    current: dict[socket.socket, int] = {}
    following = 0
    for sock in lanes:
        selector.register(sock, selectors.EVENT_READ)
        unread[sock], replies[sock], current[sock] = b"", 0, following
        sock.sendall(groups[following])
        following += 1
    done = 0
    while done < len(mails):
        for key, _ in selector.select():
            sock = key.fileobj
            *lines, unread[sock] = (unread[sock] + sock.recv(65536)).split(b"\r\n")
            for line in lines:
                if line[3:4] == b"-":
                    continue
                replies[sock] += 1
                if replies[sock] % 4 == 3:  # 354 after MAIL, RCPT, DATA: the data, next group
                    data = payloads[current[sock]]
                    if following < len(mails):
                        data += groups[following]
                        current[sock] = following
                        following += 1
                    sock.sendall(data)
                elif replies[sock] % 4 == 0:
                    done += 1
    for sock in lanes:
        sock.close()


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
