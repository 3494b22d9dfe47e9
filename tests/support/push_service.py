"""A real, local Web Push service (receive side of RFC 8030 + RFC 8291 + RFC 8292) for tests.

Subscriptions are made the way a browser makes them (own P-256 key pair and auth secret), so a
push is only accepted if it carries a valid VAPID token and decrypts to plaintext.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

MAX_BODY = 4096
URGENCIES = {"very-low", "low", "normal", "high"}
TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Refused(Exception):
    """Raised while checking a request; becomes a text/plain error answer."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or {}


@dataclass(frozen=True)
class Reply:
    """A scripted answer, e.g. ``Reply(410)`` or ``Reply(429, retry_after=2)``."""

    status: int
    retry_after: int | str | None = None  # a str: sent as is (a date, or garbage)
    body: str = "scripted"

    def refusal(self) -> Refused:
        extra = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        return Refused(self.status, self.body, extra)


@dataclass
class ReceivedPush:
    """One accepted, decrypted push message."""

    plaintext: bytes
    headers: dict[str, str]
    ttl: int
    urgency: str | None
    topic: str | None
    monotonic: float
    received_at: datetime
    vapid_claims: dict[str, Any]
    vapid_key: str

    def json(self) -> Any:
        return json.loads(self.plaintext)


@dataclass
class RequestRecord:
    """Every POST the service answered, whatever the outcome."""

    path: str
    status: int
    reason: str
    monotonic: float
    """When the answer was decided."""
    received_at: datetime
    headers: dict[str, str]
    arrived: float = 0.0
    """When the request line was read: under CPU load a request that reached the service
    before a 429 was answered may be answered well after it, so checks of what a client
    sent after learning of the 429 look at this time, not `monotonic`."""
    peer: str = ""
    """The client's address: which host sent it (tests/multihost)."""


@dataclass
class BrowserSubscription:
    """The subscriber side: what a browser's PushManager.subscribe() would hand out."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes
    _cond: threading.Condition = field(repr=False)
    received: list[ReceivedPush] = field(default_factory=list)

    @property
    def p256dh(self) -> str:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(point)

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)

    def as_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedPush]:
        """Block until at least ``count`` messages arrived for this subscription."""
        _wait(self._cond, self.received, count, timeout)
        return self.received


def _wait(cond: threading.Condition, items: list, count: int, timeout: float) -> None:
    with cond:
        if not cond.wait_for(lambda: len(items) >= count, timeout):
            raise AssertionError(f"expected {count} pushes within {timeout}s, got {len(items)}")


def verify_vapid(header: str, origin: str, expected_key: str | None) -> tuple[dict, str]:
    """Check an RFC 8292 ``Authorization: vapid t=..., k=...`` header; return (claims, k)."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "vapid":
        raise Refused(401, "missing or non-vapid Authorization")
    params = dict(p.strip().partition("=")[::2] for p in rest.split(",") if "=" in p)
    token, k = params.get("t", ""), params.get("k", "")
    try:
        raw_key = unb64url(k)
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw_key)
        head, payload, sig = token.split(".")
        if json.loads(unb64url(head)).get("alg") != "ES256":
            raise ValueError("alg")
        raw_sig = unb64url(sig)
        if len(raw_sig) != 64:
            raise ValueError("signature length")
        der = encode_dss_signature(int.from_bytes(raw_sig[:32]), int.from_bytes(raw_sig[32:]))
        key.verify(der, f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
        claims = json.loads(unb64url(payload))
        if not isinstance(claims, dict):
            raise ValueError("claims")
    except Exception as exc:
        raise Refused(401, f"invalid vapid token or key ({type(exc).__name__})") from None
    if expected_key is not None and raw_key != unb64url(expected_key):
        raise Refused(403, "vapid key is not the expected application server key")
    if claims.get("aud") != origin:
        raise Refused(401, f"aud must be {origin}")
    exp, now = claims.get("exp"), time.time()
    if not isinstance(exp, int) or exp <= now or exp > now + 86400:
        raise Refused(401, "exp must be in the future and at most 24h ahead")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.startswith(("mailto:", "https:")):
        raise Refused(401, "sub must be a mailto: or https: URI")
    return claims, k


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # a client opening dozens of connections at once is not refused

    def handle_error(self, request, client_address) -> None:
        """A client that hung up before its answer (a read timeout under test) is no error of
        ours: socketserver would print its traceback into the test output. Others still are."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class PushService:
    """A threaded HTTP/1.1 push service on 127.0.0.1 (or on `host`, e.g. a bridge address
    other network namespaces reach); use ``start()``/``stop()``."""

    def __init__(self, expected_vapid_key: str | None = None, host: str = "127.0.0.1") -> None:
        self.expected_vapid_key = expected_vapid_key
        self.subscriptions: dict[str, BrowserSubscription] = {}
        self.all_received: list[ReceivedPush] = []
        self.requests: list[RequestRecord] = []
        self.connections = 0
        self.in_flight = 0  # requests being answered right now
        self.max_in_flight = 0  # the most ever answered at once
        self.latency = 0.0  # seconds every request waits before it is answered
        self._cond = threading.Condition()
        self._scripts: dict[str, deque[Reply]] = {}
        self._failures: deque[Reply] = deque()
        self._failing: tuple[float, Reply] | None = None  # (until, reply) for every request
        self._sockets: set[socket.socket] = set()
        self.httpd = _Server((host, 0), self._handler_class())
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def origin(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> PushService:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        with self._cond:
            for sock in self._sockets:  # wake handler threads parked on idle keep-alive sockets
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self.httpd.server_close()

    def new_subscription(self) -> BrowserSubscription:
        """A fresh subscriber with its own key pair, auth secret and endpoint."""
        sub_id = secrets.token_urlsafe(16)
        sub = BrowserSubscription(
            endpoint=f"{self.origin}/push/{sub_id}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth_secret=secrets.token_bytes(16),
            _cond=self._cond,
        )
        with self._cond:
            self.subscriptions[sub_id] = sub
        return sub

    def script(self, sub: BrowserSubscription, *responses: Reply) -> None:
        """Answer the next requests for ``sub`` with ``responses``, one each, in order."""
        with self._cond:
            self._scripts.setdefault(sub.endpoint.rsplit("/", 1)[1], deque()).extend(responses)

    def fail_all(self, reply: Reply, count: int = 1) -> None:
        """Answer the next ``count`` requests to any endpoint with ``reply``."""
        with self._cond:
            self._failures.extend([reply] * count)

    def fail_for(self, reply: Reply, seconds: float) -> float:
        """Answer every request with ``reply`` for the next ``seconds``; returns the
        monotonic time it stops."""
        with self._cond:
            self._failing = (time.monotonic() + seconds, reply)
            return self._failing[0]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedPush]:
        """Block until at least ``count`` messages arrived service-wide."""
        _wait(self._cond, self.all_received, count, timeout)
        return self.all_received

    def _accept(self, path: str, headers: dict[str, str], body: bytes | None) -> ReceivedPush:
        """Validate and decrypt one push, or raise Refused."""
        match = re.fullmatch(r"/push/([A-Za-z0-9_-]+)", path)
        with self._cond:
            if self._failures:
                raise self._failures.popleft().refusal()
            if self._failing and time.monotonic() < self._failing[0]:
                raise self._failing[1].refusal()
            sub = self.subscriptions.get(match[1]) if match else None
            if sub is None:
                raise Refused(404, "no such subscription")
            script = self._scripts.get(match[1])
            if script:
                raise script.popleft().refusal()
        lower = {k.lower(): v for k, v in headers.items()}
        claims, key = verify_vapid(
            lower.get("authorization", ""), self.origin, self.expected_vapid_key
        )
        ttl, urgency, topic = lower.get("ttl", ""), lower.get("urgency"), lower.get("topic")
        if not (ttl.isascii() and ttl.isdigit()):
            raise Refused(400, "TTL header must be an integer >= 0")
        if urgency is not None and urgency not in URGENCIES:
            raise Refused(400, "bad Urgency")
        if topic is not None and not TOPIC.fullmatch(topic):
            raise Refused(400, "bad Topic")
        if lower.get("content-encoding", "").lower() != "aes128gcm":
            raise Refused(415, "Content-Encoding must be aes128gcm")
        if body is None or len(body) > MAX_BODY:
            raise Refused(413, f"payload larger than {MAX_BODY} bytes")
        try:
            plain = http_ece.decrypt(
                body, private_key=sub.private_key, auth_secret=sub.auth_secret, version="aes128gcm"
            )
        except Exception as exc:
            raise Refused(400, f"decryption failed ({type(exc).__name__})") from None
        push = ReceivedPush(
            plaintext=plain,
            headers=headers,
            ttl=int(ttl),
            urgency=urgency,
            topic=topic,
            monotonic=time.monotonic(),
            received_at=datetime.now(UTC),
            vapid_claims=claims,
            vapid_key=key,
        )
        with self._cond:
            sub.received.append(push)
            self.all_received.append(push)
            self._cond.notify_all()
        return push

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def setup(self) -> None:
                super().setup()
                with service._cond:
                    service.connections += 1
                    service._sockets.add(self.connection)

            def finish(self) -> None:
                with service._cond:
                    service._sockets.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:
                with service._cond:
                    service.in_flight += 1
                    service.max_in_flight = max(service.max_in_flight, service.in_flight)
                try:
                    self._post()
                finally:
                    with service._cond:
                        service.in_flight -= 1

            def _post(self) -> None:
                arrived = time.monotonic()
                if service.latency:
                    time.sleep(service.latency)
                declared = self.headers.get("Content-Length", "0")
                length = int(declared) if declared.isascii() and declared.isdigit() else -1
                body = self.rfile.read(length) if 0 <= length <= 1 << 20 else None
                self.close_connection = self.close_connection or body is None
                try:
                    service._accept(self.path, dict(self.headers.items()), body)
                    status, reason = 201, ""
                    extra = {"Location": f"{service.origin}/message/{secrets.token_urlsafe(12)}"}
                except Refused as exc:
                    status, reason, extra = exc.status, exc.reason, exc.headers
                record = RequestRecord(
                    path=self.path,
                    status=status,
                    reason=reason,
                    monotonic=time.monotonic(),
                    received_at=datetime.now(UTC),
                    headers=dict(self.headers.items()),
                    arrived=arrived,
                    peer=str(self.client_address[0]),
                )
                with service._cond:
                    service.requests.append(record)
                    service._cond.notify_all()
                data = reason.encode()
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
