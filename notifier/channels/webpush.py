"""Web push (RFC 8030) with aes128gcm payloads (RFC 8291) and VAPID (RFC 8292).

Each message is encrypted for its subscription (a fresh ECDH key pair and salt per message)
and posted by a lean HTTP/1.1 client (notifier.channels.http1) on one event loop per
process. Its keep-alive connections are pooled per process, so consecutive batches reuse
them; a process forked from one that had the loop (Celery prefork) starts its own and never
touches the parent's. At most `concurrency_per_origin` requests are in flight
per push service, the VAPID JWT is signed once per push-service origin and hour, every
request has timeouts, redirects are never followed and environment proxies never apply.
Each answer becomes an outcome:

    201/202 sent · 404/410 gone (the browser dropped it) · 413 shrink and retry once ·
    429/5xx/timeouts retry later, honouring Retry-After per push service ·
    400/401/403 our request or keys are wrong: failed, the subscription is kept, and loud.

A push service that says wait (429, or 5xx with Retry-After) is held back at once: every
later message for it in the batch is answered RETRY without a request, while the other
push services keep going at full speed. One not heard from for a few seconds starts slowly:
its first few requests go one at a time on one connection (a service already throttling us
sees one request, not a burst; a small batch needs one connection). Before each request
the pacer is asked for that push service's turn, then for the turn of all push services
(notifier.channels.pacing), off the loop: it may ask Redis.

One thread: `send_many` pulls messages, checks endpoints (DNS, cached per origin for a
minute), consults the backoff and encrypts, then runs the process's event loop itself, in
the caller's thread, until answers are in (the loop posts, paces and maps answers, and never
blocks on the database; the pacer's calls, which may, go to threads of their own). No thread
of ours runs the loop in the background: OpenSSL's ECDH releases the GIL, and with a loop
thread waiting for it each push cost about 30 µs more CPU than encrypting and posting it
from one thread (bench/push_client.py). Between runs of the loop the sockets wait: answers
that arrived meanwhile are read first when it runs again, before any timer fires. Threads
that send at once (the web app's) take turns running the loop; each finds its own answers.
"""

from __future__ import annotations

import asyncio
import atexit
import binascii
import contextlib
import logging
import os
import re
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from typing import NamedTuple
from urllib.parse import quote, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from notifier.channels.http1 import Http1Pool
from notifier.channels.pacing import Pacer, Unlimited, push_keys
from notifier.channels.push_backoff import LocalBackoff, SharedBackoff
from notifier.channels.push_endpoints import EndpointPolicy, EndpointRefused
from notifier.logs import redact
from notifier.messages import Outcome, PushMessage, SendResult
from notifier.openssl_hmac import hmac_sha256
from notifier.public_addresses import PublicOnlyResolver
from notifier.vapid import VapidSigner

log = logging.getLogger(__name__)

# The defaults of the settings PUSH_ENDPOINT_CHECK_SECONDS, PUSH_THROTTLE_HOLD_SECONDS,
# PUSH_KEEPALIVE_SECONDS, PUSH_WARM_SECONDS and PUSH_SLOW_START_REQUESTS (the README says more).
ENDPOINT_CHECK_SECONDS = 60.0  # how long a DNS verdict on a push-service host is trusted
AUTHORIZATION_REFRESH_SECONDS = 60.0  # how often a session asks the signer again
THROTTLE_HOLD_SECONDS = 5.0  # a 429 without Retry-After holds the origin this long (batch)
KEEPALIVE_SECONDS = 30.0  # idle pooled connections are closed after this
WARM_SECONDS = 10.0  # an origin that has not answered for this long starts slowly again
SLOW_START_REQUESTS = 8  # then its first answers come one request at a time, on one connection
STOP_WAIT_SECONDS = 5.0  # at exit, how long to wait for a thread still running the loop
ORIGINS_REMEMBERED = 1024  # endpoint prefixes whose origin is remembered (push service hosts)
HEADER_BLOCKS_REMEMBERED = 64  # per session: (origin, notice) pairs whose headers are kept
# "scheme://host[:port]/" of an endpoint whose origin depends on nothing after it: a host of
# letters, digits, dots and hyphens, no user, no brackets, nothing urlsplit would strip.
_PLAIN_PREFIX = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/")
_VISIBLE_ASCII = re.compile(r"[!-~]*\Z")


RETRY_AFTER_MAX_SECONDS = 3600.0  # the default of the setting of that name


def retry_after_seconds(
    value: str | None, now: float | None = None, maximum: float = RETRY_AFTER_MAX_SECONDS
) -> float | None:
    """Retry-After as delay-seconds or an HTTP date, at most `maximum` seconds. A value that
    is neither (garbage) counts as absent: the usual backoff applies."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), maximum)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(0.0, when - (time.time() if now is None else now)), maximum)


# The usual answers' results, made once (SendResult is frozen): not one per push.
_ACCEPTED = {status: SendResult.sent(f"HTTP {status}") for status in (200, 201, 202)}


def _waiting(origin: str, seconds: float) -> SendResult:
    """Held back without a request: the push service (or a hold on it) said wait."""
    return SendResult(Outcome.RETRY, f"{origin} asked to wait", retry_after=seconds,
                      attempted=False)  # fmt: skip


# --- RFC 8291 encryption ---------------------------------------------------------------

_CURVE = ec.SECP256R1()
_X962, _UNCOMPRESSED = serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
_RECORD_SIZE = 4096
_CEK_INFO = b"Content-Encoding: aes128gcm\x00\x01"
_NONCE_INFO = b"Content-Encoding: nonce\x00\x01"


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def _b64url_bytes(text: str) -> bytes:
    """base64.urlsafe_b64decode of unpadded text, in C calls only (it is two per push)."""
    return binascii.a2b_base64(
        (text + "=" * (-len(text) % 4)).encode("ascii").translate(_FROM_URLSAFE)
    )


def encrypt_aes128gcm(plaintext: bytes, p256dh: str, auth: str) -> bytes:
    """The aes128gcm body (RFC 8188 header + one record) of a push for this subscription,
    as RFC 8291 defines it: a new ECDH key pair and salt per message. Raises ValueError."""
    if not plaintext:
        raise ValueError("nothing to encrypt (empty payload)")
    if len(plaintext) > _RECORD_SIZE - 17:  # one record: padding delimiter and 16-byte tag
        raise ValueError(f"payload of {len(plaintext)} bytes does not fit one record")
    receiver_raw = _b64url_bytes(p256dh)
    auth_secret = _b64url_bytes(auth)
    receiver = ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, receiver_raw)
    ephemeral = ec.generate_private_key(_CURVE)
    sender_raw = ephemeral.public_key().public_bytes(_X962, _UNCOMPRESSED)
    shared = ephemeral.exchange(ec.ECDH(), receiver)
    # HKDF with SHA-256 and one-block outputs is two HMACs: extract, then expand.
    prk_key = hmac_sha256(auth_secret, shared)
    key_info = b"WebPush: info\x00" + receiver_raw + sender_raw + b"\x01"
    ikm = hmac_sha256(prk_key, key_info)
    salt = os.urandom(16)
    prk = hmac_sha256(salt, ikm)
    cek = hmac_sha256(prk, _CEK_INFO)[:16]
    nonce = hmac_sha256(prk, _NONCE_INFO)[:12]
    record = AESGCM(cek).encrypt(nonce, plaintext + b"\x02", None)  # \x02: last record
    return salt + struct.pack("!IB", _RECORD_SIZE, len(sender_raw)) + sender_raw + record


# --- the channel -------------------------------------------------------------------------


class WebPushChannel:
    """`concurrency_per_origin` requests at most in flight per push service and process;
    idle connections kept `keepalive_seconds`; a push service that has not answered for
    `warm_seconds` gets its first `slow_start_requests` requests one at a time; a 429
    without Retry-After holds it `throttle_hold_seconds`; a host's DNS check is trusted
    `endpoint_check_seconds`."""

    name = "push"

    def __init__(
        self,
        signer: VapidSigner,
        policy: EndpointPolicy,
        connect_timeout: float,
        read_timeout: float,
        backoff: SharedBackoff | LocalBackoff | None = None,
        *,
        pacer: Pacer | None = None,
        concurrency_per_origin: int = 64,
        retry_after_max_seconds: float = RETRY_AFTER_MAX_SECONDS,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
        warm_seconds: float = WARM_SECONDS,
        slow_start_requests: int = SLOW_START_REQUESTS,
        throttle_hold_seconds: float = THROTTLE_HOLD_SECONDS,
        endpoint_check_seconds: float = ENDPOINT_CHECK_SECONDS,
    ) -> None:
        if concurrency_per_origin < 1:
            raise ValueError("concurrency_per_origin must be at least 1")
        if slow_start_requests < 1:
            raise ValueError("slow_start_requests must be at least 1")
        self.signer = signer
        self.policy = policy
        self.timeout = (connect_timeout, read_timeout)
        self.backoff = backoff or LocalBackoff()
        self.pacer: Pacer = pacer or Unlimited()
        self.concurrency_per_origin = concurrency_per_origin
        self.retry_after_max_seconds = retry_after_max_seconds
        self.throttle_hold_seconds = throttle_hold_seconds
        self.endpoint_check_seconds = endpoint_check_seconds
        # The process's pool for this channel: channels alike share one.
        self.pool_key = _PoolKey(concurrency_per_origin, keepalive_seconds, warm_seconds,
                                 slow_start_requests)  # fmt: skip
        self._verdicts: dict[str, tuple[float, str | None]] = {}  # origin -> (until, refusal)
        self._origins: dict[str, str] = {}  # plain endpoint prefix -> its allowed origin

    def open(self) -> WebPushSession:
        return WebPushSession(self)

    def checked_origin(self, endpoint: str) -> str:
        """The endpoint's origin if we may post to it now; raises EndpointRefused.
        The allow-list is checked once per push service host (see _origin_of), the
        addresses a host resolves to once a minute per origin (not once per message)."""
        origin = self._origin_of(endpoint)
        now = time.monotonic()
        cached = self._verdicts.get(origin)
        if cached is None or cached[0] <= now:
            try:
                self.policy.check_addresses(endpoint)
                refusal = None
            except EndpointRefused as error:
                refusal = str(error)
            cached = self._verdicts[origin] = (now + self.endpoint_check_seconds, refusal)
        if cached[1] is not None:
            raise EndpointRefused(cached[1])
        return origin

    @staticmethod
    def target_of(endpoint: str) -> str:
        """The request target (path and query) of an endpoint, as visible ASCII: what the
        HTTP client writes after POST. Characters outside it are percent-encoded."""
        plain = _PLAIN_PREFIX.match(endpoint)
        if plain is not None:
            target = endpoint[plain.end() - 1 :].partition("#")[0]
        else:
            parts = urlsplit(endpoint)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not _VISIBLE_ASCII.match(target):
            target = quote(target, safe="/?&=%:@!$'()*+,;~-._")
        return target

    def _origin_of(self, endpoint: str) -> str:
        """policy.origin_of, remembered per plain "scheme://host[:port]/" prefix: every
        endpoint of a push service starts with the same one, and the origin (allowed or not)
        depends on nothing else, while parsing each endpoint cost more than the rest of
        preparing its push. Other endpoints, and refusals, are parsed every time."""
        plain = _PLAIN_PREFIX.match(endpoint)
        if plain is None:
            return self.policy.origin_of(endpoint)
        prefix = plain.group()
        origin = self._origins.get(prefix)
        if origin is None:
            origin = self.policy.origin_of(endpoint)  # raises for an origin not allowed
            if len(self._origins) >= ORIGINS_REMEMBERED:
                self._origins.clear()
            self._origins[prefix] = origin
        return origin


class _Job:
    """One message on its way: prepared (and encrypted) in the caller's thread, sent in the
    loop's."""

    __slots__ = ("answered_wait", "body", "headers", "key", "message", "origin", "posted",
                 "status", "target")  # fmt: skip

    def __init__(
        self, key: int, message: PushMessage, origin: str, headers: str, body: bytes
    ) -> None:
        self.key, self.message, self.origin = key, message, origin
        self.headers = headers  # the request's header lines but Content-Length
        self.body = body  # the message encrypted for its subscription
        self.target = WebPushChannel.target_of(message.endpoint)
        self.posted = False  # a request went out (answered or not)
        self.status: int | None = None  # the last answer's status
        self.answered_wait = False  # the push service itself said wait (Retry-After)


# key, result, origin to block in the backoff, and the push service it was for
_Done = tuple[int, SendResult, str | None, str]


class _Call:
    """The state of one send_many call: its jobs, senders and results."""

    def __init__(self) -> None:
        self.results: deque[_Done] = deque()  # answered, not yet taken by the caller
        self.answered = asyncio.Event()  # set when results come (bound to the loop on use)
        self.tasks: set[asyncio.Task] = set()
        self.closed = False
        self.starting: list[_Job] = []  # prepared, for the loop to start at its next run
        # Per push service, the jobs no sender has taken yet, and how many senders (tasks,
        # each one request at a time) this call runs for it.
        self.waiting: dict[str, deque[_Job]] = {}
        self.senders: dict[str, int] = {}
        # Per push service, one ticket per request in flight or answer the caller has not
        # been handed: at most the service's concurrency in all, so that what a push service
        # accepted and the caller has not recorded yet stays within it while the caller is
        # busy (a recorder's commit). Taken by a sender before each request, given back
        # when send_many hands the answer over.
        self.tickets: dict[str, asyncio.Semaphore] = {}

    def done(self, item: _Done) -> None:
        self.results.append(item)
        self.answered.set()


class WebPushSession:
    def __init__(self, channel: WebPushChannel) -> None:
        self.channel = channel
        self.lookahead = max(256, 4 * channel.concurrency_per_origin)
        self._authorizations: dict[str, tuple[float, str]] = {}  # origin -> (until, header)
        self._holds: dict[str, float] = {}  # origin -> monotonic until: seen by the loop
        # (fixed headers, TTL, urgency, topic) -> the request's header block
        self._headers: dict[tuple[str, int, str, str | None], str] = {}

    def send(self, message: PushMessage) -> SendResult:
        with contextlib.closing(self.send_many([(0, message)])) as results:
            [(_key, result)] = results
        return result

    def send_many(
        self, messages: Iterable[tuple[int, PushMessage]]
    ) -> Generator[tuple[int, SendResult], None, None]:
        """Send (key, message) pairs concurrently; yield (key, result) as each completes.

        `messages` is pulled in this thread, at most `lookahead` ahead of the results. If
        pulling raises, the results of the messages already pulled are yielded first, then
        the error is raised. Closing the iterator early cancels what is still in flight."""
        runtime = _runtime()
        call = _Call()
        source = iter(messages)
        ready: deque[tuple[int, SendResult]] = deque()  # answered without a request
        done: deque[_Done] = deque()  # answered by the loop
        outstanding = 0  # pulled and not yet yielded
        exhausted = False
        error: BaseException | None = None
        low_water = self.lookahead // 2
        try:
            while True:
                if not exhausted and (outstanding <= low_water or (not done and not call.results)):
                    jobs: list[_Job] = []
                    while outstanding < self.lookahead:
                        try:
                            key, message = next(source)
                        except StopIteration:
                            exhausted = True
                            break
                        except Exception as pulling_failed:
                            exhausted, error = True, pulling_failed
                            break
                        outstanding += 1
                        try:
                            job = self._prepare(key, message)
                        except Exception as bug:  # still one result per key, and loud
                            log.exception("unexpected error preparing a push")
                            job = SendResult(Outcome.RETRY, f"unexpected error: {bug!r}")
                        if isinstance(job, _Job):
                            jobs.append(job)
                        else:
                            ready.append((key, job))
                    if jobs:  # out before the caller records anything
                        call.starting.extend(jobs)
                        runtime.run(self._run(runtime, call, wait=0.0))
                while ready:
                    outstanding -= 1
                    yield ready.popleft()
                if outstanding == 0:
                    if exhausted:
                        break
                    continue
                while not done:
                    # Between runs of the loop, keep what other processes were told fresh
                    # (every PUSH_BACKOFF_REFRESH_SECONDS): the loop checks it before each
                    # request.
                    backoff = self.channel.backoff
                    backoff.refresh()
                    if not call.results:
                        runtime.run(self._run(runtime, call, wait=backoff.refresh_seconds))
                    done.extend(call.results)
                    call.results.clear()
                key, result, block, origin = done.popleft()
                call.tickets[origin].release()  # its sender may take the next job
                outstanding -= 1
                if block is not None:  # blocking I/O (SharedBackoff writes the database)
                    self.channel.backoff.block(block, result.retry_after or 0.0, result.detail)
                yield key, result
        finally:
            # Cancel what is still in flight (the caller stopped early), and any sender still
            # waiting for a ticket: one given back with the last answers runs no more here.
            if outstanding or any(not task.done() for task in call.tasks):
                runtime.cancel(call)
        if error is not None:
            raise error

    def close(self) -> None:
        """Nothing to release: pooled connections stay open for the next batch."""

    # --- caller's thread -----------------------------------------------------------------

    def _prepare(self, key: int, message: PushMessage) -> _Job | SendResult:
        channel = self.channel
        try:
            origin = channel.checked_origin(message.endpoint)
        except EndpointRefused as error:
            return SendResult(Outcome.FAILED, f"endpoint refused at send time: {error}")
        wait = channel.backoff.wait_seconds(origin)
        if wait > 0:  # this push service asked us (any worker) to back off: do not hammer it
            self._hold(origin, wait)  # and whatever of this batch is queued for it
            return _waiting(origin, wait)
        # Encrypted here, not on the event loop: with the loop doing only I/O, a push cost
        # about 33 µs less CPU in all (in-process, 20,000 pushes: 261-272 -> 228-239 µs).
        try:
            body = encrypt_aes128gcm(message.plaintext(), message.p256dh, message.auth)
        except (ValueError, TypeError) as error:
            return SendResult(Outcome.FAILED, f"cannot encrypt for this subscription: {error}")
        fixed = self._fixed_headers(origin)
        shape = (fixed, message.ttl, message.urgency, message.topic)
        headers = self._headers.get(shape)
        if headers is None:  # once per origin and notice: every push of a fan-out shares it
            topic = f"Topic: {message.topic}\r\n" if message.topic else ""
            headers = f"{fixed}TTL: {message.ttl}\r\nUrgency: {message.urgency}\r\n{topic}"
            if len(self._headers) >= HEADER_BLOCKS_REMEMBERED:
                self._headers.clear()
            self._headers[shape] = headers
        return _Job(key, message, origin, headers, body)

    def _fixed_headers(self, origin: str) -> str:
        """The header lines every push to this origin carries: the VAPID authorization
        (signed once per origin and hour, asked again every minute) and the encoding."""
        now = time.monotonic()
        cached = self._authorizations.get(origin)
        if cached is None or cached[0] <= now:
            header = (f"Authorization: {self.channel.signer.authorization(origin)}\r\n"
                      "Content-Encoding: aes128gcm\r\n"
                      "Content-Type: application/octet-stream\r\n")  # fmt: skip
            cached = self._authorizations[origin] = (now + AUTHORIZATION_REFRESH_SECONDS, header)
        return cached[1]

    def _hold(self, origin: str, seconds: float) -> None:
        until = time.monotonic() + seconds
        if until > self._holds.get(origin, 0.0):
            self._holds[origin] = until

    # --- in the loop -------------------------------------------------------------------

    async def _run(self, runtime: _Runtime, call: _Call, wait: float) -> None:
        """One run of the loop for this call: start the jobs prepared since the last one,
        then wait up to `wait` seconds for an answer (none: only let the new senders write
        their requests)."""
        jobs, call.starting = call.starting, []
        if jobs:
            self._start(runtime, call, jobs)
        if wait <= 0:
            for _ in range(3):  # a sender's first steps up to its request's write
                await asyncio.sleep(0)
            return
        call.answered.clear()
        if call.results:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await call.answered.wait()

    def _start(self, runtime: _Runtime, call: _Call, jobs: list[_Job]) -> None:
        """Queue the jobs per push service and start senders for them, up to the service's
        limit. A sender sends one job after the other while its service has any waiting: a
        task per sender, not per push (a task created and finished, and the service's
        semaphore taken, for every push cost the loop 7-10 µs of CPU a push where a sender
        taking its next job costs 1-2, measured alone in batches of 128 on two cores)."""
        if call.closed:
            return
        pool = runtime.pool(self.channel.pool_key)
        for job in jobs:
            waiting = call.waiting.get(job.origin)
            if waiting is None:
                waiting = call.waiting[job.origin] = deque()
                call.tickets[job.origin] = asyncio.Semaphore(pool.key.concurrency)
            waiting.append(job)
        for origin, waiting in call.waiting.items():
            running = call.senders.get(origin, 0)
            for _ in range(min(len(waiting), pool.key.concurrency - running)):
                call.senders[origin] = call.senders.get(origin, 0) + 1
                task = runtime.loop.create_task(self._send_waiting(pool, call, origin))
                call.tasks.add(task)
                task.add_done_callback(call.tasks.discard)

    async def _send_waiting(self, pool: _Pool, call: _Call, origin: str) -> None:
        """One sender: while jobs for `origin` wait, take the next and send it. It holds one
        of the service's slots (its semaphore, shared by every call of this process) while
        it sends, and asks nothing of it for a job the service asked us to hold."""
        waiting = call.waiting[origin]
        tickets = call.tickets[origin]
        state = pool.origin(origin)
        try:
            while waiting:
                await tickets.acquire()  # given back when the caller has the answer
                if not waiting:  # another sender took the last job meanwhile
                    tickets.release()
                    break
                held = self._held(origin)
                if held:
                    call.done((waiting.popleft().key, held, None, origin))
                    continue
                async with state.semaphore:
                    while True:
                        if not waiting:
                            tickets.release()
                            break
                        job = waiting.popleft()
                        call.done(await self._deliver(pool, state, job))
                        if not waiting:
                            break
                        await tickets.acquire()
        finally:
            call.senders[origin] -= 1

    async def _deliver(self, pool: _Pool, state: _Origin, job: _Job) -> _Done:
        block = None
        try:
            result = await self._attempt(pool, state, job)
            if job.answered_wait:
                block = job.origin
        except Exception as error:  # a bug, not a transport problem: retried, and loud
            log.exception("unexpected error sending a push to %s", job.origin)
            result = SendResult(Outcome.RETRY, f"unexpected error sending to {job.origin}: "
                                               f"{type(error).__name__}: {error}")  # fmt: skip
        return job.key, result, block, job.origin

    def _held(self, origin: str) -> SendResult | None:
        wait = self._holds.get(origin, 0.0) - time.monotonic()
        if wait > 0:
            return _waiting(origin, wait)
        shared = self.channel.backoff.known_wait_seconds(origin)  # told to another process
        if shared > 0:
            self._hold(origin, shared)
            return _waiting(origin, shared)
        return None

    async def _attempt(self, pool: _Pool, state: _Origin, job: _Job) -> SendResult:
        """Send one job, its sender holding one of the service's slots."""
        origin = job.origin
        held = self._held(origin)  # it may have said wait while this one queued
        if held:
            return held
        if not state.opened():
            # Not heard from lately: its first requests go one at a time, so that a service
            # that is throttling us gets one request, not a burst, and a small batch needs a
            # single connection.
            async with state.slow_start:
                held = self._held(origin)
                if held:
                    return held
                if not state.opened():
                    return await self._exchange(pool, state, job)
        return await self._exchange(pool, state, job)

    async def _exchange(self, pool: _Pool, state: _Origin, job: _Job) -> SendResult:
        origin = job.origin
        result = await self._post(pool, job, job.message)
        if result.outcome is Outcome.FAILED and result.detail.startswith("HTTP 413"):
            result = await self._post(pool, job, job.message.shrunk())
        # Hold the origin before its next message goes (its sender checks first).
        if job.answered_wait and result.retry_after:
            self._hold(origin, result.retry_after)
        elif job.status == 429:
            self._hold(origin, self.channel.throttle_hold_seconds)
        elif job.posted:
            state.answered(transport_failed=job.status is None)
        return result

    async def _paced(self, pool: _Pool, origin: str) -> SendResult | None:
        """Wait for this request's turn: the push service's own rate first, then the rate of
        all push services (notifier.channels.pacing: one key at a time, so that a slow
        service's queue never books "push" ahead of the others). None, or why not to send
        after all."""
        pacer = self.channel.pacer
        if isinstance(pacer, Unlimited):
            return None
        loop = asyncio.get_running_loop()
        for key in push_keys(origin):
            # reserve() may be a Redis round trip: never on the loop itself
            delay = await loop.run_in_executor(pool.pacing, pacer.reserve, key)
            if delay > 0:
                await asyncio.sleep(delay)
                held = self._held(origin)  # the service may have said wait meanwhile
                if held:
                    return held
        return None

    async def _post(self, pool: _Pool, job: _Job, message: PushMessage) -> SendResult:
        origin = job.origin
        held = await self._paced(pool, origin)
        if held:
            return held
        if message is job.message:
            body = job.body
        else:  # shrunk after a 413: encrypted again, with a new key
            try:
                body = encrypt_aes128gcm(message.plaintext(), message.p256dh, message.auth)
            except (ValueError, TypeError) as error:
                return SendResult(Outcome.FAILED, f"cannot encrypt the shrunk push: {error}")
        job.posted, job.status = True, None
        connect_timeout, read_timeout = self.channel.timeout
        try:
            answer = await pool.http.post(origin, job.target, job.headers, body,
                                          connect_timeout, read_timeout)  # fmt: skip
        except ValueError as error:  # a header or endpoint that could split the request
            job.posted = False
            return SendResult(Outcome.FAILED, f"will not send this request: {error}")
        except TimeoutError as error:
            return SendResult(Outcome.RETRY, f"timeout talking to {origin}: {_describe(error)}")
        except OSError as error:
            return SendResult(Outcome.RETRY, f"cannot reach {origin}: {_describe(error)}")
        result = self._outcome(answer.status, answer.body, answer.retry_after, origin,
                               self.channel.retry_after_max_seconds)  # fmt: skip
        job.status, job.answered_wait = answer.status, bool(result.retry_after)
        return result

    @staticmethod
    def _outcome(
        status: int, body: bytes, retry_after: str | None, origin: str,
        retry_after_max: float = RETRY_AFTER_MAX_SECONDS,
    ) -> SendResult:  # fmt: skip
        if 200 <= status < 300:
            return _ACCEPTED.get(status) or SendResult.sent(f"HTTP {status}")
        text = body.decode("utf-8", "replace")
        detail = f"HTTP {status} from {origin}: {' '.join(text.split())[:200]}"
        if status in (404, 410):
            return SendResult(Outcome.GONE, detail)
        if status == 429 or status >= 500:
            wait = retry_after_seconds(retry_after, maximum=retry_after_max)
            return SendResult(Outcome.RETRY, detail, retry_after=wait)
        if status in (400, 401, 403):
            log.error("push service rejected our request (check VAPID keys): %s", redact(detail))
        return SendResult(Outcome.FAILED, detail)


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


# --- the event loop and connection pools, one per process ------------------------------


def _ssl_context() -> ssl.SSLContext:
    """Verify push services against the same CA bundle requests uses."""
    try:
        import certifi
    except ImportError:  # pragma: no cover
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


class _Origin:
    """What the loop knows about one push service: its in-flight limit, and whether it has
    answered (without asking us to wait) recently and often enough to get a full window."""

    __slots__ = ("key", "semaphore", "slow_start", "slow_start_left", "warm_until")

    def __init__(self, key: _PoolKey) -> None:
        self.key = key
        self.semaphore = asyncio.Semaphore(key.concurrency)
        self.slow_start = asyncio.Lock()  # held by the one request in flight while starting
        self.warm_until = 0.0  # monotonic: it answered recently
        self.slow_start_left = 0  # answers still to get one request at a time

    def opened(self) -> bool:
        return self.slow_start_left == 0 and self.warm_until > time.monotonic()

    def answered(self, transport_failed: bool) -> None:
        """A request was made and was not told to wait. A service that does not answer at
        all is not throttling us: it gets the full window at once (each request bounded by
        its timeouts) rather than one timeout after another."""
        now = time.monotonic()
        if transport_failed:
            self.slow_start_left = 0
        elif self.warm_until <= now:  # cold: this is the first of the slow start
            self.slow_start_left = self.key.slow_start_requests - 1
        elif self.slow_start_left:
            self.slow_start_left -= 1
        self.warm_until = now + self.key.warm_seconds


class _PoolKey(NamedTuple):
    """The settings a process's pool is made with: channels with the same share it."""

    concurrency: int  # connections per origin: its semaphore bounds them
    keepalive_seconds: float
    warm_seconds: float
    slow_start_requests: int


class _Pool:
    """Keep-alive connections and per-origin limits for one set of settings."""

    def __init__(self, key: _PoolKey) -> None:
        self.key = key
        # The addresses connected to are checked, not only a name looked up earlier: no gap
        # for a DNS answer that changes in between (address literals never get here unless
        # PUSH_ALLOWED_ORIGINS names them).
        self.http = Http1Pool(_ssl_context(), PublicOnlyResolver(), key.keepalive_seconds)
        self._origins: dict[str, _Origin] = {}
        # Pacer calls may block (Redis): their own threads, not the loop's default executor
        # that aiohttp resolves host names in.
        self.pacing = ThreadPoolExecutor(max_workers=8, thread_name_prefix="webpush-pacer")

    def origin(self, origin: str) -> _Origin:
        state = self._origins.get(origin)
        if state is None:
            state = self._origins[origin] = _Origin(self.key)
        return state


class _Runtime:
    """This process's event loop and its pools. The loop runs only while a caller runs it
    (`run`), one thread at a time."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.pools: dict[_PoolKey, _Pool] = {}
        self.turn = threading.Lock()  # held by the thread running the loop

    def run(self, coroutine):
        """Run the loop in this thread until `coroutine` is done (other threads wait). A
        thread that is itself inside a running event loop (a caller in asyncio code, or
        Playwright's sync API in a test) cannot run another: it waits while a short-lived
        thread runs ours."""
        with self.turn:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # no loop runs in this thread: the usual case
                return self.loop.run_until_complete(coroutine)
            with ThreadPoolExecutor(1, thread_name_prefix="webpush-loop") as runner:
                return runner.submit(self.loop.run_until_complete, coroutine).result()

    def alive(self) -> bool:
        return self.pid == os.getpid() and not self.loop.is_closed()

    def pool(self, key: _PoolKey) -> _Pool:  # in the loop only
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = _Pool(key)
        return pool

    def cancel(self, call: _Call) -> None:
        """Stop what a call still has in flight (its caller is gone) and wait for it."""

        async def cancel() -> None:
            call.closed = True
            tasks = list(call.tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(asyncio.wait_for(cancel(), 10))

    def stop(self) -> None:
        """Close the pools and the loop, unless another thread is still running it (a
        daemon thread at exit): then they go with the process, which never waits for it."""

        async def close_pools() -> None:
            for pool in self.pools.values():
                pool.http.close()
                pool.pacing.shutdown(wait=False)

        if not self.turn.acquire(timeout=STOP_WAIT_SECONDS):
            return
        try:
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(asyncio.wait_for(close_pools(), 5))
            with contextlib.suppress(Exception):
                self.loop.close()
        finally:
            self.turn.release()


_lock = threading.Lock()
_current: _Runtime | None = None
_inherited: list[_Runtime] = []  # from a parent process: kept, never used or closed


def _runtime() -> _Runtime:
    global _current
    runtime = _current
    if runtime is not None and runtime.alive():
        return runtime
    with _lock:
        runtime = _current
        if runtime is None or not runtime.alive():
            if runtime is not None:
                # Inherited through fork, or closed. Its sockets
                # may be the parent's live connections: leave them alone, and keep the objects
                # so that no finaliser ever runs on them here.
                _inherited.append(runtime)
            runtime = _current = _Runtime()
    return runtime


def warm_up(channel: WebPushChannel) -> None:
    """Make this process's event loop and the channel's connection pool (TLS context,
    resolver) now rather than for the first push."""
    runtime = _runtime()

    async def make_pool() -> None:
        runtime.pool(channel.pool_key)

    runtime.run(asyncio.wait_for(make_pool(), 10))


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent may have held it while forking


def shutdown() -> None:
    """Close this process's pooled connections and stop its loop (run at exit)."""
    global _current
    with _lock:
        runtime, _current = _current, None
    if runtime is not None and runtime.pid == os.getpid():
        runtime.stop()
    elif runtime is not None:
        _inherited.append(runtime)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown)
