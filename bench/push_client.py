"""How much of a worker's CPU each way of talking HTTP to a push service costs, per push.

    .venv/bin/python bench/push_client.py                 # 20,000 requests per way
    .venv/bin/python bench/push_client.py --requests 50000 --rounds 3

Posts the same pre-encrypted pushes to the push sink (bench/sinks.py, its own process, so
its CPU is not counted) with 64 requests in flight to one origin, as PUSH_CONCURRENCY_PER_ORIGIN
allows, and prints this process's CPU µs per request for each way:

- aiohttp: a ClientSession with keep-alive (what web push used before notifier/channels/http1.py);
- http1: notifier's Http1Pool, keep-alive, one request at a time per connection (what it uses);
- pipelined: the same requests written 8 at a time on 8 connections and answered in order
  (HTTP/1.1 pipelining, a minimal client here: the saving pipelining could bring);
- polled: no event loop, the same one request at a time per connection on 64 non-blocking
  sockets and one epoll (a minimal client: what one driven like the SMTP channel could cost);
- h2 (when the `h2` package is installed; it is not a dependency): the HTTP/2 framing alone,
  a client connection's requests and answers encoded and parsed in memory against an h2
  server connection whose own work is not timed (no sockets, so below what HTTP/2 would cost);
- channel: notifier's WebPushChannel.send_many, the whole client a send task uses (each
  push encrypted on the caller's thread, sent from the channel's event loop), over the same
  pushes unencrypted: its figure less encryption's is the channel's own work per push;
- and, for scale, RFC 8291 encryption of one push (a new ECDH key per message).

The choice it informs is in README ("Fan-out speed"): pipelining saves little more than
keep-alive does and leaves several requests in doubt when a connection drops.
"""

from __future__ import annotations

import argparse
import asyncio
import select
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httptools  # noqa: E402

from bench.sinks import PushSink, make_key_pool  # noqa: E402
from notifier.channels.http1 import Http1Pool  # noqa: E402
from notifier.channels.push_endpoints import EndpointPolicy  # noqa: E402
from notifier.channels.webpush import WebPushChannel, encrypt_aes128gcm  # noqa: E402
from notifier.messages import Outcome, PushMessage  # noqa: E402
from notifier.public_addresses import PublicOnlyResolver  # noqa: E402
from notifier.vapid import VapidSigner, generate_keypair, load_private_key  # noqa: E402

IN_FLIGHT = 64  # PUSH_CONCURRENCY_PER_ORIGIN's default
PIPELINE_CONNECTIONS, PIPELINE_DEPTH = 8, 8  # 64 in flight too


class Requests:
    """N pushes to the sink, encrypted once beforehand: only the HTTP work is timed."""

    def __init__(self, sink: PushSink, signer: VapidSigner, count: int, p256dh, auth) -> None:
        self.origin = sink.origin
        self.signer = signer
        self.authorization = signer.authorization(sink.origin)
        payload = b'{"title":"Bench","body":"' + b"x" * 300 + b'"}'
        self.messages = [
            PushMessage(f"{sink.origin}/push/{n}", p256dh[n % len(p256dh)], auth[n % len(auth)],
                        {}, ttl=3600, encoded=payload)
            for n in range(1, count + 1)
        ]  # fmt: skip
        bodies = [encrypt_aes128gcm(payload, p256dh[i], auth[i]) for i in range(len(p256dh))]
        self.items = [(f"/push/{n}", bodies[n % len(bodies)]) for n in range(1, count + 1)]
        self.headers = {"Authorization": self.authorization, "Content-Encoding": "aes128gcm",
                        "Content-Type": "application/octet-stream", "TTL": "3600",
                        "Urgency": "normal"}  # fmt: skip
        self.header_lines = "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())


def cpu_per_request(count: int, run) -> tuple[float, int]:
    """This process's CPU µs per request while `run()` sends `count` requests."""
    started = time.process_time()
    accepted = run()
    return (time.process_time() - started) / count * 1e6, accepted


def via_aiohttp(requests: Requests) -> int:
    import aiohttp

    async def main() -> int:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=IN_FLIGHT)
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
            gate = asyncio.Semaphore(IN_FLIGHT)

            async def one(path: str, body: bytes) -> int:
                post = session.post(requests.origin + path, data=body,
                                    headers=requests.headers, allow_redirects=False)  # fmt: skip
                async with gate, post as response:
                    await response.read()
                    return response.status

            statuses = await asyncio.gather(*(one(p, b) for p, b in requests.items))
        return sum(s == 201 for s in statuses)

    return asyncio.run(main())


def via_http1(requests: Requests) -> int:
    async def main() -> int:
        pool = Http1Pool(ssl.create_default_context(), PublicOnlyResolver(), 30.0)
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one(path: str, body: bytes) -> int:
            async with gate:
                answer = await pool.post(requests.origin, path, requests.header_lines, body,
                                         5.0, 10.0)  # fmt: skip
                return answer.status

        try:
            statuses = await asyncio.gather(*(one(p, b) for p, b in requests.items))
        finally:
            pool.close()
        return sum(s == 201 for s in statuses)

    return asyncio.run(main())


def via_channel(requests: Requests) -> int:
    channel = WebPushChannel(requests.signer, EndpointPolicy([requests.origin]), 5.0, 10.0,
                             concurrency_per_origin=IN_FLIGHT)  # fmt: skip
    session = channel.open()
    results = session.send_many(enumerate(requests.messages))
    return sum(result.outcome is Outcome.SENT for _, result in results)


class _Pipelined(asyncio.Protocol):
    """A connection that writes DEPTH requests at once and counts answers in order."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.answered = 0
        self.created = 0
        self.waiter: asyncio.Future | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        self.answered += 1
        self.created += self.parser.get_status_code() == 201
        if self.answered == self.expected and self.waiter is not None:
            self.waiter.set_result(None)

    async def send(self, wire: list[bytes]) -> None:
        self.answered, self.expected = 0, len(wire)
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(b"".join(wire))
        await self.waiter


def via_pipelining(requests: Requests) -> int:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        host, port = requests.origin.removeprefix("http://").split(":")
        connections = [
            (await loop.create_connection(_Pipelined, host, int(port)))[1]
            for _ in range(PIPELINE_CONNECTIONS)
        ]
        created = 0
        head = f"Host: {host}:{port}\r\n{requests.header_lines}"

        async def lane(connection: _Pipelined, items) -> int:
            done = 0
            for start in range(0, len(items), PIPELINE_DEPTH):
                batch = items[start : start + PIPELINE_DEPTH]
                wire = [f"POST {path} HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n"
                        .encode() + body for path, body in batch]  # fmt: skip
                await connection.send(wire)
                done += connection.created
                connection.created = 0
            return done

        shares = [requests.items[i::PIPELINE_CONNECTIONS] for i in range(PIPELINE_CONNECTIONS)]
        created = sum(
            await asyncio.gather(*(lane(c, s) for c, s in zip(connections, shares, strict=True)))
        )
        for connection in connections:
            connection.transport.close()
        return created

    return asyncio.run(main())


def h2_framing(requests: Requests) -> float | None:
    """Client-side CPU µs per request of HTTP/2 framing alone, in memory; None without h2."""
    try:
        import h2.config
        import h2.connection
        import h2.events
    except ImportError:
        return None
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, validate_inbound_headers=False)
    )
    client.initiate_connection()
    client.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000})
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    headers = [(k.lower(), v) for k, v in requests.headers.items()]
    timed = 0.0
    sent = 0
    for start in range(0, len(requests.items), IN_FLIGHT):
        batch = requests.items[start : start + IN_FLIGHT]
        began = time.process_time()
        for path, body in batch:
            stream = client.get_next_available_stream_id()
            client.send_headers(stream, [(":method", "POST"), (":scheme", "https"),
                                         (":authority", "push.example"), (":path", path),
                                         ("content-length", str(len(body))), *headers])  # fmt: skip
            client.send_data(stream, body, end_stream=True)
        wire = client.data_to_send()
        timed += time.process_time() - began
        for event in server.receive_data(wire):  # the server's side: not timed
            if isinstance(event, h2.events.StreamEnded):
                answer_headers = [(":status", "201"), ("location", "/m/1")]
                server.send_headers(event.stream_id, answer_headers, end_stream=True)
            elif isinstance(event, h2.events.DataReceived):
                server.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        answer = server.data_to_send()
        began = time.process_time()
        for event in client.receive_data(answer):
            if isinstance(event, h2.events.ResponseReceived):
                sent += dict(event.headers).get(b":status") == b"201"
        client.data_to_send()  # window updates and the like
        timed += time.process_time() - began
    if sent != len(requests.items):
        raise RuntimeError(f"h2: {sent} of {len(requests.items)} answered 201")
    return timed / len(requests.items) * 1e6


class _Polled:
    """One keep-alive connection of the polled way: a non-blocking socket and its parser."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = httptools.HttpResponseParser(self)
        self.status: int | None = None

    def on_message_complete(self) -> None:
        self.status = self.parser.get_status_code()


def via_polling(requests: Requests) -> int:
    """No event loop: IN_FLIGHT connections, one request at a time on each, and one epoll
    that says whose answer is in (what a client driven like the SMTP channel would cost)."""
    host, port = requests.origin.removeprefix("http://").split(":")
    head = f"Host: {host}:{port}\r\n{requests.header_lines}"
    items = iter(requests.items)
    connections = {}
    poller = select.epoll()
    created = in_flight = 0

    def start(connection: _Polled) -> None:
        nonlocal in_flight
        item = next(items, None)
        if item is not None:
            path, body = item
            request = f"POST {path} HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n"
            connection.sock.send(request.encode() + body)
            in_flight += 1

    try:
        for _ in range(IN_FLIGHT):
            connection = _Polled(host, int(port))
            connections[connection.sock.fileno()] = connection
            poller.register(connection.sock.fileno(), select.EPOLLIN)
            start(connection)
        while in_flight:
            for fd, _events in poller.poll(10):
                connection = connections[fd]
                connection.parser.feed_data(connection.sock.recv(65536))
                if connection.status is not None:
                    created += connection.status == 201
                    connection.status, in_flight = None, in_flight - 1
                    start(connection)
    finally:
        poller.close()
        for connection in connections.values():
            connection.sock.close()
    return created


def encryption(p256dh: list[str], auth: list[str], count: int = 2000) -> float:
    payload = b'{"title":"Bench","body":"' + b"x" * 300 + b'"}'
    started = time.process_time()
    for n in range(count):
        encrypt_aes128gcm(payload, p256dh[n % len(p256dh)], auth[n % len(auth)])
    return (time.process_time() - started) / count * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3, help="each way this many times")
    parser.add_argument("--only", nargs="*", help="only these ways (e.g. channel http1)")
    args = parser.parse_args(argv)

    private, public = generate_keypair()
    signer = VapidSigner(load_private_key(private, public), "mailto:bench@notifier.test")
    entries, p256dh, auth = make_key_pool(50)
    with tempfile.TemporaryDirectory() as workdir:
        sink = PushSink(Path(workdir), entries, public, decrypt_every=1000).start()
        try:
            requests = Requests(sink, signer, args.requests, p256dh, auth)
            ways = {"aiohttp": via_aiohttp, "http1": via_http1, "pipelined": via_pipelining,
                    "polled": via_polling, "channel": via_channel}  # fmt: skip
            if args.only:
                ways = {name: way for name, way in ways.items() if name in args.only}
            figures: dict[str, list[float]] = {name: [] for name in ways}
            for _ in range(args.rounds):
                for name, way in ways.items():  # alternated, so drift hits each alike
                    sink.new_phase(args.requests + 1)
                    micros, accepted = cpu_per_request(args.requests, lambda w=way: w(requests))
                    if accepted != args.requests:
                        print(f"{name}: only {accepted} of {args.requests} accepted")
                        return 1
                    figures[name].append(micros)
        finally:
            sink.stop()
    print(f"{args.requests:,} requests per way, {IN_FLIGHT} in flight, {args.rounds} rounds; "
          "this process's CPU per request (the sink runs in its own process)")  # fmt: skip
    for name, values in figures.items():
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"  {name:<10} {statistics.median(values):6.1f} µs  (runs: {shown})")
    if not args.only or "h2" in args.only:
        framing = h2_framing(requests)
        if framing is None:
            print("  h2         not measured: the h2 package is not installed (pip install h2)")
        else:
            print(f"  h2         {framing:6.1f} µs  framing alone, in memory, no sockets or TLS")
    print(f"  encryption {encryption(p256dh, auth):6.1f} µs  RFC 8291, one push")
    return 0


if __name__ == "__main__":
    sys.exit(main())
