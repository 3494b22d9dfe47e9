"""The web push channel's concurrent send_many, against real local push services that check
VAPID and decrypt every payload (tests/support/push_service.py)."""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator

import http_ece
import pytest

from notifier.channels import webpush
from notifier.channels.push_endpoints import EndpointPolicy, EndpointRefused
from notifier.channels.webpush import WebPushChannel, WebPushSession, encrypt_aes128gcm
from notifier.config import DEFAULT_PUSH_ORIGINS
from notifier.messages import Outcome, PushMessage, SendResult
from notifier.vapid import VapidSigner, generate_keypair, load_private_key
from tests.support.push_service import BrowserSubscription, PushService, Reply
from tests.support.settling import settled_count


@pytest.fixture(scope="module")
def signer() -> VapidSigner:
    private, public = generate_keypair()
    return VapidSigner(load_private_key(private, public), "mailto:ops@aze.test")


@pytest.fixture
def other_service() -> Iterator[PushService]:
    """A second push service: another origin (another port)."""
    service = PushService().start()
    yield service
    service.stop()


def channel_for(signer: VapidSigner, *origins: str, **options) -> WebPushChannel:
    return WebPushChannel(signer, EndpointPolicy(origins), 10.0, 10.0, **options)


def push(browser: BrowserSubscription, n: int = 0) -> PushMessage:
    payload = {"title": f"Xəbər {n}: Manat ə ğ ş ı — Новости 🚀", "body": "Bakı limanı " * 20,
               "url": f"https://aze.media/story-{n}", "image": "https://aze.media/i.jpg",
               "icon": None, "manageUrl": "https://n.aze.media/push/manage/x",
               "tag": f"article-{n}", "timestamp": n}  # fmt: skip
    return PushMessage(browser.endpoint, browser.p256dh, browser.auth, payload, ttl=3600,
                       urgency="high", topic=f"article-{n}")  # fmt: skip


def send_all(session: WebPushSession, messages: list[PushMessage]) -> dict[int, SendResult]:
    """send_many over numbered messages; checks every key comes back exactly once."""
    results: dict[int, SendResult] = {}
    for key, result in session.send_many(enumerate(messages)):
        assert key not in results, f"key {key} answered twice"
        results[key] = result
    assert sorted(results) == list(range(len(messages)))
    return results


def outcomes(results: dict[int, SendResult]) -> Counter:
    return Counter(result.outcome for result in results.values())


def test_300_messages_arrive_decrypted_once_each(signer, push_service):
    browsers = [push_service.new_subscription() for _ in range(300)]
    channel = channel_for(signer, push_service.origin)
    signed_before = signer.signatures
    results = send_all(channel.open(), [push(b, n) for n, b in enumerate(browsers)])

    assert outcomes(results) == {Outcome.SENT: 300}
    push_service.wait_for(300)
    for n, browser in enumerate(browsers):
        [received] = browser.received
        assert received.json() == json.loads(push(browser, n).plaintext())
        assert (received.ttl, received.urgency, received.topic) == (3600, "high", f"article-{n}")
        assert received.vapid_claims["aud"] == push_service.origin
    assert len(push_service.all_received) == 300
    assert signer.signatures - signed_before <= 1
    assert push_service.connections <= channel.concurrency_per_origin


def test_requests_in_flight_per_origin_never_exceed_the_limit_and_connections_are_reused(
    signer, push_service
):
    push_service.latency = 0.03  # so that requests overlap
    browser = push_service.new_subscription()
    channel = channel_for(signer, push_service.origin, concurrency_per_origin=4)
    results = send_all(channel.open(), [push(browser, n) for n in range(40)])

    assert outcomes(results) == {Outcome.SENT: 40}
    assert push_service.max_in_flight == 4
    assert push_service.connections <= 4
    assert len(push_service.requests) == 40


def test_a_throttled_push_service_does_not_hold_back_another(signer, push_service, other_service):
    limit = 8
    channel = channel_for(signer, push_service.origin, other_service.origin,
                          concurrency_per_origin=limit)  # fmt: skip
    session = channel.open()
    fast, slow = push_service.new_subscription(), other_service.new_subscription()
    warm_up = send_all(session, [push(slow, n) for n in range(webpush.SLOW_START_REQUESTS)])
    assert outcomes(warm_up) == {Outcome.SENT: webpush.SLOW_START_REQUESTS}  # full window next
    other_service.latency = 0.05  # a window of requests is in flight when the first 429 lands
    other_service.fail_all(Reply(429, retry_after=30), count=1000)
    asked_before = len(other_service.requests)

    messages = [push(fast if n % 2 else slow, n) for n in range(200)]
    results = send_all(session, messages)

    to_fast = [r for n, r in results.items() if n % 2]
    to_slow = [r for n, r in results.items() if not n % 2]
    assert {r.outcome for r in to_fast} == {Outcome.SENT}
    assert len(fast.wait_for(100)) == 100
    assert {r.outcome for r in to_slow} == {Outcome.RETRY}
    assert all(r.retry_after and r.retry_after > 20 for r in to_slow)
    asked = len(other_service.requests) - asked_before
    assert 1 <= asked <= limit, "only the requests in flight when the 429 came"
    assert channel.backoff.wait_seconds(other_service.origin) > 20
    assert channel.backoff.wait_seconds(push_service.origin) == 0
    again = session.send(push(slow))  # later messages are not even tried
    assert again.outcome is Outcome.RETRY and again.retry_after > 20
    assert len(other_service.requests) - asked_before == asked


def test_a_push_service_not_heard_from_lately_gets_one_request_first(signer, push_service):
    push_service.fail_all(Reply(429, retry_after=30), count=1000)
    browser = push_service.new_subscription()
    results = send_all(channel_for(signer, push_service.origin).open(),
                       [push(browser, n) for n in range(20)])  # fmt: skip
    assert outcomes(results) == {Outcome.RETRY: 20}
    assert len(push_service.requests) == 1


def test_a_small_batch_to_a_push_service_starting_slowly_needs_one_connection(signer, push_service):
    browser = push_service.new_subscription()
    messages = [push(browser, n) for n in range(webpush.SLOW_START_REQUESTS)]
    results = send_all(channel_for(signer, push_service.origin).open(), messages)
    assert outcomes(results) == {Outcome.SENT: webpush.SLOW_START_REQUESTS}
    assert push_service.connections == 1 and push_service.max_in_flight == 1


def test_the_slow_start_is_as_long_as_the_setting_says(signer, push_service):
    push_service.latency = 0.05  # the last two overlap once the start is over
    browser = push_service.new_subscription()
    channel = channel_for(signer, push_service.origin, slow_start_requests=3,
                          concurrency_per_origin=4)  # fmt: skip
    results = send_all(channel.open(), [push(browser, n) for n in range(5)])
    assert outcomes(results) == {Outcome.SENT: 5}
    # Three one at a time, then the other two together (the default, 8, sends all five singly).
    assert push_service.max_in_flight == 2


def test_the_push_timings_come_from_the_settings(tmp_path):
    from notifier.channels.registry import push_channel
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, PUSH_KEEPALIVE_SECONDS="12", PUSH_WARM_SECONDS="3",
                             PUSH_SLOW_START_REQUESTS="2", PUSH_THROTTLE_HOLD_SECONDS="7",
                             PUSH_ENDPOINT_CHECK_SECONDS="90",
                             PUSH_CONCURRENCY_PER_ORIGIN="16")  # fmt: skip
    channel = push_channel(settings)
    assert channel.pool_key == (16, 12.0, 3.0, 2)
    assert (channel.throttle_hold_seconds, channel.endpoint_check_seconds) == (7.0, 90.0)
    with pytest.raises(ValueError, match="PUSH_SLOW_START_REQUESTS"):
        make_settings(tmp_path, PUSH_SLOW_START_REQUESTS="0")


def test_429_without_retry_after_holds_the_rest_of_the_batch(signer, push_service):
    push_service.fail_all(Reply(429), count=1000)
    browser = push_service.new_subscription()
    channel = channel_for(signer, push_service.origin)
    results = send_all(channel.open(), [push(browser, n) for n in range(10)])
    assert outcomes(results) == {Outcome.RETRY: 10}
    assert results[0].retry_after is None and "HTTP 429" in results[0].detail
    assert all(0 < r.retry_after <= 5 for r in list(results.values())[1:])
    assert len(push_service.requests) == 1
    assert channel.backoff.wait_seconds(push_service.origin) == 0, "as before: no Retry-After"


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (Reply(404), Outcome.GONE),
        (Reply(410), Outcome.GONE),
        (Reply(400), Outcome.FAILED),
        (Reply(401), Outcome.FAILED),
        (Reply(403), Outcome.FAILED),
        (Reply(301), Outcome.FAILED),  # redirects are never followed
        (Reply(500), Outcome.RETRY),
        (Reply(503, retry_after=7), Outcome.RETRY),
    ],
)
def test_each_answer_becomes_its_outcome(signer, push_service, caplog, reply, outcome):
    browser, other = push_service.new_subscription(), push_service.new_subscription()
    push_service.script(browser, reply)
    channel = channel_for(signer, push_service.origin)
    with caplog.at_level(logging.ERROR, logger="notifier.channels.webpush"):
        results = send_all(channel.open(), [push(browser)])
    [result] = results.values()
    assert result.outcome is outcome
    assert result.detail.startswith(f"HTTP {reply.status} from {push_service.origin}")
    assert result.retry_after == reply.retry_after
    assert browser.received == []
    loud = [r for r in caplog.records if "rejected our request" in r.getMessage()]
    assert bool(loud) == (reply.status in (400, 401, 403))
    held = channel.backoff.wait_seconds(push_service.origin)
    assert (held > 0) == (reply.retry_after is not None)
    if not held:  # the service stays usable for everyone else
        assert channel.open().send(push(other)).outcome is Outcome.SENT


def test_413_is_shrunk_and_sent_once(signer, push_service):
    big, twice = push_service.new_subscription(), push_service.new_subscription()
    push_service.script(big, Reply(413))
    push_service.script(twice, Reply(413), Reply(413))
    results = send_all(channel_for(signer, push_service.origin).open(),
                       [push(big), push(twice)])  # fmt: skip
    assert results[0].outcome is Outcome.SENT
    [received] = big.received
    assert received.json()["image"] is None and len(received.json()["body"]) <= 120
    assert results[1].outcome is Outcome.FAILED and results[1].detail.startswith("HTTP 413")
    assert twice.received == []
    assert len(push_service.requests) == 4


def test_a_push_service_that_never_answers_times_out_and_is_retried(signer, push_service):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections, never answers
    origin = f"http://127.0.0.1:{silent.getsockname()[1]}"
    keys = push_service.new_subscription()
    browser = BrowserSubscription(f"{origin}/push/x", keys.private_key, keys.auth_secret,
                                  keys._cond)  # fmt: skip
    channel = WebPushChannel(signer, EndpointPolicy([origin]), 1.0, 0.3)
    try:
        results = send_all(channel.open(), [push(browser, n) for n in range(3)])
    finally:
        silent.close()
    assert outcomes(results) == {Outcome.RETRY: 3}
    assert all("timeout" in r.detail and r.retry_after is None for r in results.values())


def test_answers_that_arrive_while_the_caller_records_are_read_not_timed_out(signer, push_service):
    """The loop runs only while send_many waits for answers: a caller that takes longer
    than the read timeout over one result (a slow database) finds the answers that came
    meanwhile read as they are, not turned into timeouts and sent again."""
    push_service.latency = 0.05  # answers come while the caller sleeps
    browsers = [push_service.new_subscription() for _ in range(24)]
    channel = WebPushChannel(signer, EndpointPolicy([push_service.origin]), 5.0, 0.3,
                             concurrency_per_origin=8)  # fmt: skip
    results: dict[int, SendResult] = {}
    for key, result in channel.open().send_many(enumerate(push(b, n) for n, b in
                                                           enumerate(browsers))):  # fmt: skip
        results[key] = result
        if len(results) in (1, 9):  # away for more than three read timeouts, 8 requests out
            away_until = time.monotonic() + 1.0
            # Every request written meanwhile answered, however loaded the machine (CI once
            # answered some only after the caller was back, and they timed out as they should).
            settled_count(lambda: -1 if push_service.in_flight else len(push_service.requests))
            time.sleep(max(0.0, away_until - time.monotonic()))

    assert outcomes(results) == {Outcome.SENT: 24}
    push_service.wait_for(24)
    assert len(push_service.requests) == 24  # none sent twice


def test_accepted_not_handed_back_stays_below_the_concurrency(signer, push_service):
    """What a worker killed while recording can have pushed and not recorded: the pushes the
    service accepted that send_many has not handed back. A request in flight and an answer
    not yet handed over each hold one of the service's PUSH_CONCURRENCY_PER_ORIGIN tickets,
    so while the caller is busy (a recorder's commit, here a pause after every ten) at most
    that many less the one just handed back are out (README: "Recording in groups"). Senders
    that took their next job as soon as an answer came reached twice that."""
    concurrency = 8
    push_service.latency = 0.02  # answers pile up while requests are in flight
    browsers = [push_service.new_subscription() for _ in range(80)]
    channel = channel_for(signer, push_service.origin, concurrency_per_origin=concurrency)
    seen, handed = [], 0
    for _key, result in channel.open().send_many(enumerate(push(b, n) for n, b in
                                                            enumerate(browsers))):  # fmt: skip
        assert result.outcome is Outcome.SENT
        handed += 1
        if handed % 10 or handed == len(browsers):
            continue
        seen.append(settled_count(lambda: len(push_service.all_received)) - handed)
    assert 0 < max(seen) <= concurrency - 1, seen
    assert len(push_service.wait_for(80)) == 80


def test_a_caller_inside_a_running_event_loop_can_still_send(signer, push_service):
    """The channel runs its loop in the caller's thread; a caller already inside one (asyncio
    code, or Playwright's sync API in the browser tests) gets its answers all the same."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    browsers = [push_service.new_subscription() for _ in range(3)]
    channel = channel_for(signer, push_service.origin)

    async def from_a_coroutine() -> dict[int, SendResult]:
        return send_all(channel.open(), [push(b, n) for n, b in enumerate(browsers)])

    with ThreadPoolExecutor(1) as thread:  # a thread of its own: no loop of another test's
        results = thread.submit(asyncio.run, from_a_coroutine()).result()
    assert outcomes(results) == {Outcome.SENT: 3}
    assert channel.open().send(push(browsers[0])).outcome is Outcome.SENT  # and after it
    assert len(push_service.wait_for(4)) == 4


def test_a_push_service_that_refuses_connections_is_retried(signer, push_service):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    origin = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()  # nobody listens there now
    keys = push_service.new_subscription()
    browser = BrowserSubscription(f"{origin}/push/x", keys.private_key, keys.auth_secret,
                                  keys._cond)  # fmt: skip
    results = send_all(channel_for(signer, origin).open(), [push(browser)])
    assert results[0].outcome is Outcome.RETRY and "cannot reach" in results[0].detail


class RecordingPacer:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.calls: list[tuple[str, int]] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def reserve(self, key: str, count: int = 1) -> float:
        with self._lock:
            self.calls.append((key, count))
            self.threads.add(threading.current_thread().name)
        return self.delay if key.startswith("push:") else 0.0


def test_the_pacer_is_asked_before_every_request_for_the_origin_then_for_all(signer, push_service):
    pacer = RecordingPacer(delay=0.001)
    browsers = [push_service.new_subscription() for _ in range(6)]
    push_service.script(browsers[0], Reply(413))  # the shrunk resend is a request too
    channel = channel_for(signer, push_service.origin, pacer=pacer)
    results = send_all(channel.open(), [push(b, n) for n, b in enumerate(browsers)])

    assert outcomes(results) == {Outcome.SENT: 6}
    requests = len(push_service.requests)
    assert requests == 7
    origin_key = f"push:{push_service.origin}"
    assert Counter(pacer.calls) == {(origin_key, 1): requests, ("push", 1): requests}
    # A pacer may block (Redis): never in the thread running the loop, always in its own.
    assert pacer.threads and all(t.startswith("webpush-pacer") for t in pacer.threads)

    pacer.calls.clear()  # one request: its own service's turn first, then all services'
    assert channel.open().send(push(browsers[1])).outcome is Outcome.SENT
    assert pacer.calls == [(origin_key, 1), ("push", 1)]


def test_endpoints_are_checked_at_send_time_and_dns_once_per_origin(signer, push_service):
    class CountingPolicy(EndpointPolicy):
        lookups = 0

        def check_addresses(self, endpoint: str) -> None:
            CountingPolicy.lookups += 1
            super().check_addresses(endpoint)

    browser = push_service.new_subscription()
    channel = WebPushChannel(signer, CountingPolicy([push_service.origin]), 2.0, 5.0)
    elsewhere = push(browser)
    elsewhere = PushMessage("https://push.evil.test/x", elsewhere.p256dh, elsewhere.auth,
                            elsewhere.payload, ttl=60)  # fmt: skip
    results = send_all(channel.open(), [push(browser, n) for n in range(20)] + [elsewhere])

    assert outcomes(results) == {Outcome.SENT: 20, Outcome.FAILED: 1}
    assert "endpoint refused at send time" in results[20].detail
    assert "not accepted" in results[20].detail
    assert CountingPolicy.lookups == 1
    assert len(push_service.requests) == 20


def test_a_subscription_we_cannot_encrypt_for_fails_without_a_request(signer, push_service):
    browser = push_service.new_subscription()
    good = push(browser)
    broken = PushMessage(good.endpoint, "AAAA" + good.p256dh[4:], good.auth, good.payload, 60)
    results = send_all(channel_for(signer, push_service.origin).open(), [broken, good])
    assert results[0].outcome is Outcome.FAILED
    assert results[0].detail.startswith("cannot encrypt for this subscription")
    assert results[1].outcome is Outcome.SENT
    assert len(push_service.requests) == 1


def test_messages_are_pulled_lazily_and_closing_early_cancels_the_rest(signer, push_service):
    push_service.latency = 0.02
    browser = push_service.new_subscription()
    channel = channel_for(signer, push_service.origin, concurrency_per_origin=4)
    session = channel.open()
    pulled = []

    def messages() -> Iterator[tuple[int, PushMessage]]:
        for n in range(5000):
            pulled.append(threading.current_thread().name)
            yield n, push(browser, n)

    results = session.send_many(messages())
    first = next(results)
    assert len(pulled) <= session.lookahead
    assert set(pulled) == {threading.current_thread().name}, "pulled in the caller's thread"
    got = [first] + [next(results) for _ in range(9)]
    results.close()  # the caller stops early: what is queued or in flight is cancelled
    assert {r.outcome for _, r in got} == {Outcome.SENT}
    assert len(pulled) < 5000
    asked = len(push_service.requests)
    push_service.latency = 0.0
    assert session.send(push(browser)).outcome is Outcome.SENT
    assert len(push_service.requests) <= asked + 1 + 4, "nothing left running after close"


def test_an_error_while_pulling_comes_after_the_results_already_due(signer, push_service):
    browser = push_service.new_subscription()

    def messages() -> Iterator[tuple[int, PushMessage]]:
        for n in range(3):
            yield n, push(browser, n)
        raise LookupError("compose failed")

    seen = []
    with pytest.raises(LookupError, match="compose failed"):
        for key, result in channel_for(signer, push_service.origin).open().send_many(messages()):
            seen.append((key, result.outcome))
    assert sorted(seen) == [(0, Outcome.SENT), (1, Outcome.SENT), (2, Outcome.SENT)]


def test_environment_proxies_are_never_used(signer, push_service, monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    browser = push_service.new_subscription()
    assert channel_for(signer, push_service.origin).open().send(push(browser)).outcome is (
        Outcome.SENT
    )


def test_encryption_is_rfc_8291_aes128gcm_with_a_fresh_key_per_message(push_service):
    browser = push_service.new_subscription()
    plaintext = "Bakı ə ğ ş ı 🚀".encode()
    bodies = [encrypt_aes128gcm(plaintext, browser.p256dh, browser.auth) for _ in range(2)]
    for body in bodies:
        record_size, id_length = struct.unpack("!IB", body[16:21])
        assert (record_size, id_length) == (4096, 65) and body[21] == 4
        decrypted = http_ece.decrypt(
            body, private_key=browser.private_key, auth_secret=browser.auth_secret,
            version="aes128gcm",
        )  # fmt: skip
        assert decrypted == plaintext
    assert bodies[0][:86] != bodies[1][:86], "salt and sender key differ per message"
    with pytest.raises(ValueError):
        encrypt_aes128gcm(b"", browser.p256dh, browser.auth)
    with pytest.raises(ValueError):
        encrypt_aes128gcm(plaintext, "AAAA" + browser.p256dh[4:], browser.auth)


def test_a_forked_child_sends_through_its_own_event_loop(signer, push_service):
    """Celery prefork: the child must not use the parent's loop thread or connections."""
    browser = push_service.new_subscription()
    channel = channel_for(signer, push_service.origin)
    assert channel.open().send(push(browser, 1)).outcome is Outcome.SENT  # parent's loop runs
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # the child: report, and never return into pytest
        status = 1
        try:
            result = channel.open().send(push(browser, 2))
            os.write(write_end, result.outcome.value.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        answer = os.read(read_end, 100).decode()
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    assert (answer, os.waitstatus_to_exitcode(status)) == ("sent", 0)
    assert channel.open().send(push(browser, 3)).outcome is Outcome.SENT  # parent still fine
    assert sorted(p.json()["timestamp"] for p in browser.wait_for(3)) == [1, 2, 3]


ENDPOINTS = [
    "https://fcm.googleapis.com/fcm/send/a:b",
    "https://fcm.googleapis.com/fcm/send/c:d",
    "https://FCM.googleapis.com/fcm/send/e",
    "https://fcm.googleapis.com:443/fcm/send/f",
    "https://fcm.googleapis.com:8443/fcm/send/g",
    "https://fcm.googleapis.com:99999/fcm/send/h",
    "https://eu.notify.windows.com/w/?token=x",
    "https://evil.test/fcm/send/a",
    "https://fcm.googleapis.com.evil.test/x",
    "https://user@fcm.googleapis.com/x",
    "https://evil.test@fcm.googleapis.com/x",
    "https://fcm.googleapis.com@evil.test/x",
    "https://evil.test#@fcm.googleapis.com/x",
    "https://evil.test?@fcm.googleapis.com/x",
    "https://fcm.googleapis.com\\@evil.test/x",
    " https://fcm.googleapis.com/x",
    "https://fcm.google\tapis.com/x",
    "HTTPS://fcm.googleapis.com/x",
    "http://fcm.googleapis.com/x",
    "https://[::1]/x",
    "ftp://fcm.googleapis.com/x",
    "https://fcm.googleapis.com",
]


def test_endpoint_origins_remembered_per_host_are_what_parsing_each_endpoint_says(signer):
    """The origin remembered per plain "https://host/" prefix: for every endpoint, in any
    order, the same origin as the policy gives parsing it, or the same refusal."""
    policy = EndpointPolicy(DEFAULT_PUSH_ORIGINS)
    channel = WebPushChannel(signer, policy, 1.0, 1.0)

    def verdict(origin_of, endpoint: str) -> str:
        try:
            return origin_of(endpoint)
        except EndpointRefused as refused:
            return f"refused: {refused}"

    for endpoint in [*ENDPOINTS, *reversed(ENDPOINTS), *ENDPOINTS]:
        assert verdict(channel._origin_of, endpoint) == verdict(policy.origin_of, endpoint)
    assert verdict(channel._origin_of, "https://evil.test/fcm/send/a").startswith("refused")
