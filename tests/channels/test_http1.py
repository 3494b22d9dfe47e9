"""The lean HTTP/1.1 client push requests go through, against raw scripted servers: what it
writes, how it reads answers the way push services (and broken ones) write them, and when a
connection is reused. The web push channel's own tests (test_webpush.py) cover the rest
against a real push service that checks VAPID and decrypts every payload."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from notifier.channels import http1
from notifier.channels.http1 import BadResponse, Disconnected, Http1Pool
from notifier.public_addresses import PublicOnlyResolver
from tests.support.tls import self_signed

HEADERS = "TTL: 60\r\nUrgency: normal\r\n"


def in_own_loop(make_coroutine):
    """asyncio.run in a thread of its own: the browser tests keep Playwright's event loop
    running in the test thread for the whole session (tests/test_public_addresses.py)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A TCP server on 127.0.0.1 that runs `script` for each connection and keeps what
    each request looked like (head and body) and how many connections it accepted."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[tuple[bytes, bytes]] = []
        self.connections = 0
        self.origin = ""

    async def start(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.origin = f"http://127.0.0.1:{port}"
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length)
        self.requests.append((head, body))
        return head, body

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def answering(*answers: bytes, then_close: bool = False) -> Callable[[Server], Script]:
    """A script that reads one request per answer on the same connection and writes it."""

    def script_for(server: Server) -> Script:
        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for answer in answers:
                await server.read_request(reader)
                writer.write(answer)
                await writer.drain()
            if not then_close:
                await reader.read()  # keep the connection until the client closes it

        return script

    return script_for


def run(scenario: Callable[[Http1Pool, Server], Awaitable[None]], script_for,
        keepalive: float = 30.0) -> Server:  # fmt: skip
    async def main() -> Server:
        server = Server(lambda r, w: asyncio.sleep(0))
        server.script = script_for(server)
        await server.start()
        pool = Http1Pool(ssl.create_default_context(), PublicOnlyResolver(), keepalive)
        try:
            await scenario(pool, server)
        finally:
            pool.close()
            await server.stop()
        return server

    return in_own_loop(main)


CREATED = b"HTTP/1.1 201 Created\r\nLocation: /m/1\r\nContent-Length: 0\r\n\r\n"


def test_a_request_is_one_well_formed_post_and_the_connection_is_kept_for_the_next():
    async def scenario(pool: Http1Pool, server: Server) -> None:
        for n in range(3):
            answer = await pool.post(server.origin, f"/push/abc?n={n}", HEADERS, b"\x01\x02",
                                     5.0, 5.0)  # fmt: skip
            assert (answer.status, answer.body) == (201, b"")

    server = run(scenario, answering(CREATED, CREATED, CREATED))
    assert server.connections == 1, "keep-alive: three requests, one connection"
    head, body = server.requests[2]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /push/abc?n=2 HTTP/1.1"
    assert f"Host: {server.origin.removeprefix('http://')}" in lines
    assert {"TTL: 60", "Urgency: normal", "Content-Length: 2"} <= set(lines)
    assert body == b"\x01\x02"


def test_retry_after_and_a_chunked_body_are_read():
    answer = (b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 120\r\nTransfer-Encoding: "
              b"chunked\r\n\r\n5\r\nslow \r\n5\r\ndown!\r\n0\r\n\r\n")  # fmt: skip
    seen = []

    async def scenario(pool: Http1Pool, server: Server) -> None:
        seen.append(await pool.post(server.origin, "/p", HEADERS, b"x", 5.0, 5.0))
        seen.append(await pool.post(server.origin, "/p", HEADERS, b"x", 5.0, 5.0))

    server = run(scenario, answering(answer, CREATED))
    assert (seen[0].status, seen[0].retry_after, seen[0].body) == (429, "120", b"slow down!")
    assert seen[1].status == 201 and server.connections == 1


def test_an_answer_that_closes_the_connection_is_read_and_the_next_request_opens_another():
    closing = b"HTTP/1.1 410 Gone\r\nConnection: close\r\nContent-Length: 4\r\n\r\ngone"
    seen = []

    async def scenario(pool: Http1Pool, server: Server) -> None:
        seen.append(await pool.post(server.origin, "/p", HEADERS, b"x", 5.0, 5.0))
        seen.append(await pool.post(server.origin, "/p", HEADERS, b"x", 5.0, 5.0))

    server = run(scenario, answering(closing, then_close=True))
    assert (seen[0].status, seen[0].body) == (410, b"gone")
    assert seen[1].status == 410 and server.connections == 2


def test_a_body_delimited_by_the_end_of_the_connection_is_an_answer():
    seen = []

    async def scenario(pool: Http1Pool, server: Server) -> None:
        seen.append(await pool.post(server.origin, "/p", HEADERS, b"x", 5.0, 5.0))

    run(scenario, answering(b"HTTP/1.0 500 Oops\r\n\r\nbroken backend", then_close=True))
    assert (seen[0].status, seen[0].body) == (500, b"broken backend")


@pytest.mark.parametrize(
    "answer, error",
    [
        (b"HTTP/1.1 201 Created\r\nContent-Length: 10\r\n\r\nhalf", Disconnected),  # cut short
        (b"", Disconnected),  # closed without a word
        (b"SMTP/1.0 nonsense\r\n\r\n", BadResponse),
        (b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n", BadResponse),
    ],
)
def test_a_broken_answer_is_a_connection_error_and_the_connection_is_not_reused(answer, error):
    raised = []

    async def scenario(pool: Http1Pool, server: Server) -> None:
        with pytest.raises(error) as caught:
            await pool.post(server.origin, "/p", HEADERS, b"x", 5.0, 5.0)
        raised.append(caught.value)
        assert await pool.post(server.origin, "/p", HEADERS, b"x", 5.0, 5.0) is not None

    def script_for(server: Server) -> Script:
        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            if server.connections == 1:
                writer.write(answer)
                await writer.drain()
                return  # and close
            writer.write(CREATED)
            await writer.drain()
            await reader.read()

        return script

    server = run(scenario, script_for)
    assert isinstance(raised[0], ConnectionError)
    assert server.connections == 2, "a new connection after the broken one"


def late_answer_to_slow(delay: float) -> Callable[[Server], Script]:
    """/slow is answered (a 404) only after `delay`, anything else at once (201); then the
    connection waits for a next request, which a client that gave up on it never sends."""

    def script_for(server: Server) -> Script:
        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head, _ = await server.read_request(reader)
            if b"/slow" in head:
                await asyncio.sleep(delay)
                writer.write(b"HTTP/1.1 404 Late\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                await server.read_request(reader)  # never comes: the client dropped this one
            writer.write(CREATED)
            await writer.drain()
            await reader.read()

        return script

    return script_for


def test_no_answer_within_the_read_timeout_is_a_timeout_and_the_late_answer_is_never_read():
    async def scenario(pool: Http1Pool, server: Server) -> None:
        with pytest.raises(TimeoutError):
            await pool.post(server.origin, "/slow", HEADERS, b"x", 5.0, 0.2)
        answer = await pool.post(server.origin, "/fast", HEADERS, b"x", 5.0, 5.0)
        assert answer.status == 201, "not the first request's late answer"

    server = run(scenario, late_answer_to_slow(0.5))
    assert server.connections == 2


def test_a_cancelled_wait_never_leaves_its_connection_for_the_next_request():
    async def scenario(pool: Http1Pool, server: Server) -> None:
        waiting = asyncio.ensure_future(pool.post(server.origin, "/slow", HEADERS, b"x", 5, 5))
        await asyncio.sleep(0.1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (await pool.post(server.origin, "/fast", HEADERS, b"x", 5, 5)).status == 201

    server = run(scenario, late_answer_to_slow(0.3))
    assert server.connections == 2


def test_an_interim_100_answer_is_skipped_for_the_real_one():
    seen = []

    async def scenario(pool: Http1Pool, server: Server) -> None:
        seen.append(await pool.post(server.origin, "/p", HEADERS, b"x", 5.0, 5.0))

    run(scenario, answering(b"HTTP/1.1 100 Continue\r\n\r\n" + CREATED))
    assert seen[0].status == 201


def test_idle_connections_are_closed_after_the_keepalive_time():
    async def scenario(pool: Http1Pool, server: Server) -> None:
        await pool.post(server.origin, "/p", HEADERS, b"x", 5.0, 5.0)
        await asyncio.sleep(0.5)  # keep-alive is 0.2 s here, so the reaper has run
        await pool.post(server.origin, "/p", HEADERS, b"x", 5.0, 5.0)

    # A short keep-alive so the test need not idle for the real 30 s.
    server = run(scenario, answering(CREATED, CREATED), keepalive=0.2)
    assert server.connections == 2


@pytest.mark.parametrize(
    "target, headers",
    [
        ("/p HTTP/1.1\r\nX-Evil: 1\r\n\r\nPOST /q", HEADERS),
        ("/p", "TTL: 60\r\nTopic: a\r\nX-Evil: 1\r\n"[:-2] + "\n"),
        ("/p", "Topic: a\rb\r\n"),
        ("/ü", HEADERS),
    ],
)
def test_a_target_or_header_that_could_split_the_request_is_refused_unsent(target, headers):
    async def scenario(pool: Http1Pool, server: Server) -> None:
        with pytest.raises(ValueError):
            await pool.post(server.origin, target, headers, b"x", 5.0, 5.0)

    server = run(scenario, answering(CREATED))
    assert server.connections == 0 and server.requests == []


def test_header_blocks_once_checked_still_leave_every_other_block_checked(monkeypatch):
    """A pool remembers the header blocks it checked (a fan-out's pushes share one): a block
    it has not seen is checked still, also once the remembered ones were forgotten."""
    monkeypatch.setattr(http1, "CHECKED_HEADERS_REMEMBERED", 2)
    evil = "Topic: a\r\nX-Evil: 1\n"

    async def scenario(pool: Http1Pool, server: Server) -> None:
        for n in range(3):  # the third forgets the first two
            answer = await pool.post(server.origin, "/p", f"{HEADERS}Topic: t{n}\r\n", b"x",
                                     5.0, 5.0)  # fmt: skip
            assert answer.status == 201
        for headers in (evil, f"{HEADERS}{evil}"):
            with pytest.raises(ValueError):
                await pool.post(server.origin, "/p", headers, b"x", 5.0, 5.0)

    server = run(scenario, answering(CREATED, CREATED, CREATED))
    assert len(server.requests) == 3


def test_connecting_to_nothing_is_an_os_error():
    async def main() -> None:
        with socket_closed_port() as port:
            pool = Http1Pool(ssl.create_default_context(), PublicOnlyResolver(), 30.0)
            with pytest.raises(OSError):
                await pool.post(f"http://127.0.0.1:{port}", "/p", HEADERS, b"x", 2.0, 2.0)
            pool.close()

    in_own_loop(main)


def socket_closed_port():
    import contextlib
    import socket

    @contextlib.contextmanager
    def closed():
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        yield port  # nothing listens there now

    return closed()


@pytest.mark.parametrize("trusted", ["localhost", "push.example"])
def test_https_is_verified_against_the_name_in_the_origin(tmp_path, trusted):
    """Push services are all https: the answer comes over TLS when the certificate is
    trusted and names the host, and the request fails (an OSError: retried) when not."""
    served_cert, served_key = self_signed(tmp_path, trusted)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(served_cert, served_key)
    client_context = ssl.create_default_context(cafile=str(served_cert))
    requests: list[bytes] = []

    async def main():
        async def serve(reader, writer):
            try:
                requests.append(await reader.readuntil(b"\r\n\r\n"))
                await reader.readexactly(1)
                writer.write(CREATED)
                await writer.drain()
                await reader.read()
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        # localhost is not a public address: trusted here as an operator's own host would be
        pool = Http1Pool(client_context, PublicOnlyResolver(trusted_hosts=["localhost"]), 30.0)
        try:
            return await pool.post(f"https://localhost:{port}", "/p", HEADERS, b"x", 5.0, 5.0)
        except OSError as error:
            return error
        finally:
            pool.close()
            server.close()
            await server.wait_closed()

    outcome = in_own_loop(main)
    if trusted == "localhost":
        assert outcome.status == 201
        assert requests and b"Host: localhost:" in requests[0]
    else:  # a certificate for another name: refused before any request is written
        assert isinstance(outcome, ssl.SSLCertVerificationError), outcome
        assert requests == []
