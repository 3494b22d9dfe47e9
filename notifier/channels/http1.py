"""A lean HTTP/1.1 client for posting to push services: keep-alive connections per origin,
one request at a time on each, on asyncio's own transports.

Why not a general client: a push is one small POST whose answer is a status, a Retry-After
and a short body. aiohttp's request and response machinery (URL objects, header
multidicts, stream readers, tracing hooks, cookie jars) cost more worker CPU per push than
the RFC 8291 encryption; here a request is one preformatted write and its answer is parsed
by llhttp (httptools, the parser uvicorn uses) with callbacks for the three things we read.

No pipelining: RFC 9112 (9.3.2) tells clients not to pipeline after a non-idempotent
request such as POST, a connection that drops with several requests written and unanswered
leaves all of them in doubt (sent or not?), and push services do not promise to support it.
Keep-alive alone gives most of the saving (bench/push_client.py measures each way).

What a caller may rely on:
- every connection is made to the addresses `resolver` returns (PublicOnlyResolver: the
  addresses connected to are the ones checked), with TLS verified against `ssl_context`;
- `connect_timeout` bounds resolving and connecting, `read_timeout` the wait for the answer
  after the request is written; both raise TimeoutError;
- a connection is reused only after a complete answer that allows it, never after an error,
  a timeout or a cancelled wait (the answer could still arrive and be read as the next
  request's), and is closed after `keepalive_seconds` idle;
- redirects are answers like any other (never followed), no proxy or .netrc applies, no
  cookies are kept;
- failures to connect or to read an answer raise OSError (ConnectionError, TimeoutError or
  the resolver's own); a malformed answer raises BadResponse (a ConnectionError).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from notifier.public_addresses import PublicOnlyResolver

MAX_BODY_BYTES = 64 * 1024  # of an answer's body kept (error details); the rest is read past
CHECKED_HEADERS_REMEMBERED = 256  # distinct header blocks remembered as checked
# What may stand in a request target and a header value we write: visible ASCII only, so no
# request can be split or smuggled by an endpoint or header that carries a CR, LF or space.
_TARGET = re.compile(r"/[\x21-\x7e]*\Z")
_HEADERS = re.compile(r"(?:[!-9;-~]+: [ -~]*\r\n)*\Z")


class BadResponse(ConnectionError):
    """The push service's answer was not HTTP/1.x we can read."""


class Disconnected(ConnectionError):
    """The connection closed before the answer was complete."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    retry_after: str | None
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Answer] | None = None
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.headers_done = False
        self.retry_after: str | None = None
        self.body: list[bytes] = []
        self.body_size = 0

    # --- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(BadResponse(f"unreadable answer: {error}"))
            self.abort()

    def eof_received(self) -> bool:
        return False  # close our side too: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.headers_done and not self.parser.should_keep_alive():
            self._complete()  # an answer whose body runs to the end of the connection
        else:
            self._fail(Disconnected(f"connection closed before the answer: {exc or 'EOF'}"))

    # --- llhttp callbacks --------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 11 and name.lower() == b"retry-after":
            self.retry_after = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        if self.body_size < MAX_BODY_BYTES:
            self.body.append(body)
        self.body_size += len(body)

    def on_message_complete(self) -> None:
        if self.parser.get_status_code() < 200:  # 1xx: an interim answer, the real one follows
            self._reset()
            return
        self._complete()
        if not self.parser.should_keep_alive():
            self.abort()

    # --- the request -------------------------------------------------------------------

    def _complete(self) -> None:
        waiter, self.waiter = self.waiter, None
        answer = Answer(self.parser.get_status_code(), self.retry_after,
                        b"".join(self.body)[:MAX_BODY_BYTES])  # fmt: skip
        self._reset()
        if waiter is not None and not waiter.done():
            waiter.set_result(answer)
        elif waiter is None:  # an answer nobody asked for: the connection is out of step
            self.abort()

    def _fail(self, error: BaseException) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _time_out(self, seconds: float) -> None:
        self._fail(TimeoutError(f"no answer within {seconds:g} s"))
        self.abort()

    async def exchange(self, request: bytes, read_timeout: float) -> Answer:
        assert self.transport is not None and self.waiter is None
        waiter = self.waiter = self.loop.create_future()
        self.transport.write(request)
        timer = self.loop.call_later(read_timeout, self._time_out, read_timeout)
        try:
            return await waiter
        except BaseException:
            self.abort()  # cancelled or failed mid-answer: never reused
            raise
        finally:
            timer.cancel()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _Origin:
    """Where one push service's connections are made, and its idle ones."""

    __slots__ = ("host", "host_header", "idle", "literal", "port", "server_hostname", "tls")

    def __init__(self, origin: str) -> None:
        parts = urlsplit(origin)
        self.tls = parts.scheme == "https"
        if parts.hostname is None or parts.scheme not in ("https", "http"):
            raise ValueError(f"not an http(s) origin: {origin!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.server_hostname = self.host if self.tls else None
        self.host_header = parts.netloc
        self.idle: list[_Connection] = []
        # An address written in the origin itself is not resolved (as in aiohttp): the
        # endpoint policy checked it, and only PUSH_ALLOWED_ORIGINS can name one.
        self.literal: list[dict] | None = None
        try:
            address = ipaddress.ip_address(self.host.split("%", 1)[0])
        except ValueError:
            pass
        else:
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            self.literal = [{"host": self.host, "port": self.port, "family": family}]


class Http1Pool:
    """Keep-alive connections to push services, for one event loop."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        resolver: PublicOnlyResolver,
        keepalive_seconds: float,
    ) -> None:
        self.ssl_context = ssl_context
        self.resolver = resolver
        self.keepalive_seconds = keepalive_seconds
        self._origins: dict[str, _Origin] = {}
        self._open: set[_Connection] = set()
        # Header blocks found to be visible ASCII on one line each: checking the ~500
        # characters of a push's block (its VAPID authorization) cost 2-3 µs a request.
        self._checked_headers: set[str] = set()
        self._reaper: asyncio.TimerHandle | None = None

    async def post(
        self,
        origin: str,
        target: str,
        headers: str,
        body: bytes,
        connect_timeout: float,
        read_timeout: float,
    ) -> Answer:
        """POST `body` to `target` (path and query) at `origin` ("https://host[:port]") with
        `headers` ("Name: value\\r\\n" lines). Raises ValueError for a target or header
        that is not visible ASCII on one line: it could split the request."""
        if _TARGET.match(target) is None:
            raise ValueError("the endpoint's path is not plain ASCII without spaces")
        if headers not in self._checked_headers:  # a fan-out's pushes share theirs
            if _HEADERS.match(headers) is None:
                raise ValueError("a header is not visible ASCII on one line")
            if len(self._checked_headers) >= CHECKED_HEADERS_REMEMBERED:
                self._checked_headers.clear()
            self._checked_headers.add(headers)
        place = self._origins.get(origin)
        if place is None:
            place = self._origins[origin] = _Origin(origin)
        request = (f"POST {target} HTTP/1.1\r\nHost: {place.host_header}\r\n{headers}"
                   f"Content-Length: {len(body)}\r\n\r\n").encode("ascii") + body  # fmt: skip
        connection = self._idle(place) or await self._connect(place, connect_timeout)
        try:
            answer = await connection.exchange(request, read_timeout)
        finally:
            if connection.closed:
                self._open.discard(connection)
        if not connection.closed:
            connection.idle_since = time.monotonic()
            place.idle.append(connection)
            self._reap_later()
        return answer

    def _idle(self, place: _Origin) -> _Connection | None:
        idle = place.idle
        while idle:
            connection = idle.pop()  # the most recently used: the likeliest to be still open
            if not connection.closed:
                return connection
            self._open.discard(connection)
        return None

    async def _connect(self, place: _Origin, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            addresses = place.literal or await self.resolver.resolve(place.host, place.port)
            last: OSError | None = None
            for address in addresses:
                try:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(loop),
                        host=address["host"],
                        port=address["port"],
                        family=address["family"],
                        ssl=self.ssl_context if place.tls else None,
                        server_hostname=place.server_hostname,
                    )
                except OSError as error:  # ssl.SSLError and certificate errors included
                    last = error
                    continue
                self._open.add(connection)
                return connection
        raise last or OSError(f"{place.host} resolved to no address")

    def _reap_later(self) -> None:
        if self._reaper is None:
            loop = asyncio.get_running_loop()
            self._reaper = loop.call_later(self.keepalive_seconds, self._reap)

    def _reap(self) -> None:
        """Close connections idle for `keepalive_seconds`; look again while any are idle."""
        self._reaper = None
        oldest = time.monotonic() - self.keepalive_seconds
        waiting = False
        for place in self._origins.values():
            keep = []
            for connection in place.idle:
                if connection.closed:
                    self._open.discard(connection)
                elif connection.idle_since <= oldest:
                    connection.abort()
                    self._open.discard(connection)
                else:
                    keep.append(connection)
            place.idle = keep
            waiting = waiting or bool(keep)
        if waiting:
            self._reap_later()

    def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for connection in self._open:
            connection.abort()
        self._open.clear()
        for place in self._origins.values():
            place.idle.clear()
