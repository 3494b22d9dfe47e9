"""The local push service is a real one: pywebpush pushes to it are verified and decrypted."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02
from pywebpush import WebPusher, WebPushException, webpush

from tests.support.push_service import BrowserSubscription, PushService, Reply, b64url

SUB = "mailto:ops@example.com"
TEXT = "ə ğ ş ı Привет 🚀"


@pytest.fixture
def service() -> Iterator[PushService]:
    svc = PushService().start()
    yield svc
    svc.stop()


@pytest.fixture
def vapid() -> Vapid02:
    key = Vapid02()
    key.generate_keys()
    return key


def public_key(vapid: Vapid02) -> str:
    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url(raw)


def push(sub: BrowserSubscription, vapid: Vapid02, data: object, **kwargs) -> requests.Response:
    return webpush(
        sub.as_json(),
        data=json.dumps(data, ensure_ascii=False),
        vapid_private_key=vapid,
        vapid_claims={"sub": SUB},
        ttl=60,
        **kwargs,
    )


def post(
    sub: BrowserSubscription,
    vapid: Vapid02,
    *,
    claims: dict | None = None,
    body: bytes | None = None,
    drop: tuple[str, ...] = (),
    **headers: str,
) -> requests.Response:
    """A hand-made push: real encryption and signing, but every part can be broken on purpose."""
    claims = claims or {"sub": SUB, "aud": sub.endpoint.split("/push/")[0]}
    all_headers = {
        **vapid.sign({"exp": int(time.time()) + 3600, **claims}),
        "TTL": "60",
        "Content-Encoding": "aes128gcm",
        **headers,
    }
    if body is None:
        body = WebPusher(sub.as_json()).encode(b'{"ok": true}')["body"]
    for name in drop:
        del all_headers[name]
    return requests.post(sub.endpoint, data=body, headers=all_headers, timeout=5)


def test_pywebpush_push_is_received_and_decrypted(service, vapid):
    sub = service.new_subscription()
    payload = {"title": TEXT, "url": "https://aze.test/news/1"}
    response = push(sub, vapid, payload, headers={"Urgency": "high", "Topic": "breaking-1"})
    assert response.status_code == 201
    assert response.headers["Location"].startswith(f"{service.origin}/message/")
    [received] = sub.wait_for(1)
    assert received.json() == payload
    assert received.plaintext == json.dumps(payload, ensure_ascii=False).encode()
    assert TEXT in received.plaintext.decode()
    assert (received.ttl, received.urgency, received.topic) == (60, "high", "breaking-1")
    assert received.vapid_claims["aud"] == service.origin
    assert received.vapid_claims["sub"] == SUB
    assert received.vapid_key == public_key(vapid)
    assert service.all_received == [received]
    assert [r.status for r in service.requests] == [201]


def test_raw_private_key_and_separate_subscriptions(service, vapid):
    raw = vapid.private_key.private_numbers().private_value.to_bytes(32, "big")
    first, second = service.new_subscription(), service.new_subscription()
    assert first.endpoint != second.endpoint and first.p256dh != second.p256dh
    webpush(second.as_json(), data="hi", vapid_private_key=b64url(raw), vapid_claims={"sub": SUB})
    assert second.wait_for(1)[0].plaintext == b"hi"
    assert second.received[0].ttl == 0
    assert first.received == []
    with pytest.raises(AssertionError):
        first.wait_for(1, timeout=0.1)


def test_subscription_json_looks_like_a_browsers(service):
    keys = service.new_subscription().as_json()["keys"]
    assert len(keys["p256dh"]) == 87 and "=" not in keys["p256dh"]  # 65 bytes, no padding
    assert len(keys["auth"]) == 22 and "=" not in keys["auth"]  # 16 bytes, no padding


@pytest.mark.parametrize(
    "aud", ["https://wrong.example", "http://127.0.0.1:1", "http://localhost"], ids=str
)
def test_wrong_audience_is_401(service, vapid, aud):
    sub = service.new_subscription()
    response = post(sub, vapid, claims={"sub": SUB, "aud": aud})
    assert response.status_code == 401
    assert "aud" in response.text
    assert sub.received == []


@pytest.mark.parametrize("offset", [-10, 86400 + 120], ids=["expired", "beyond-24h"])
def test_bad_expiry_is_401(service, vapid, offset):
    sub = service.new_subscription()
    claims = {"sub": SUB, "aud": service.origin, "exp": int(time.time()) + offset}
    response = post(sub, vapid, claims=claims)
    assert response.status_code == 401
    assert "exp" in response.text


def test_sub_claim_must_be_mailto_or_https(service, vapid):
    vapid.conf["no-strict"] = True  # py_vapid would refuse to sign this itself
    sub = service.new_subscription()
    response = post(sub, vapid, claims={"sub": "ops@example.com", "aud": service.origin})
    assert response.status_code == 401
    assert "sub" in response.text


def test_missing_or_forged_authorization_is_401(service, vapid):
    sub = service.new_subscription()
    assert post(sub, vapid, drop=("Authorization",)).status_code == 401
    other = Vapid02()
    other.generate_keys()
    token = vapid.sign({"sub": SUB, "aud": service.origin})["Authorization"]
    forged = token.split(",k=")[0] + ",k=" + public_key(other)  # valid key, wrong signer
    assert post(sub, vapid, Authorization=forged).status_code == 401
    assert post(sub, vapid, Authorization="WebPush abc.def.ghi").status_code == 401
    assert sub.received == []


def test_unexpected_application_server_key_is_403(vapid):
    other = Vapid02()
    other.generate_keys()
    service = PushService(expected_vapid_key=public_key(other)).start()
    try:
        sub = service.new_subscription()
        response = post(sub, vapid)
        assert response.status_code == 403
        assert post(sub, other).status_code == 201
    finally:
        service.stop()


def test_missing_ttl_is_400(service, vapid):
    sub = service.new_subscription()
    assert post(sub, vapid, drop=("TTL",)).status_code == 400
    assert post(sub, vapid, TTL="-1").status_code == 400
    assert post(sub, vapid, TTL="0").status_code == 201


@pytest.mark.parametrize(
    "headers",
    [{"Urgency": "urgent"}, {"Topic": "x" * 33}, {"Topic": "no spaces"}],
    ids=["urgency", "long-topic", "topic-alphabet"],
)
def test_bad_urgency_or_topic_is_400(service, vapid, headers):
    assert post(service.new_subscription(), vapid, **headers).status_code == 400


def test_tampered_body_is_400(service, vapid):
    sub = service.new_subscription()
    body = bytearray(WebPusher(sub.as_json()).encode(b"secret")["body"])
    body[-1] ^= 0x01
    response = post(sub, vapid, body=bytes(body))
    assert response.status_code == 400
    assert "decrypt" in response.text
    other = service.new_subscription()  # encrypted for someone else
    assert post(sub, vapid, body=WebPusher(other.as_json()).encode(b"x")["body"]).status_code == 400
    assert sub.received == [] and other.received == []


def test_encoding_size_and_unknown_endpoint(service, vapid):
    sub = service.new_subscription()
    assert post(sub, vapid, **{"Content-Encoding": "aesgcm"}).status_code == 415
    assert post(sub, vapid, body=b"\0" * 4097).status_code == 413
    unknown = requests.post(f"{service.origin}/push/nobody", data=b"x", timeout=5)
    assert unknown.status_code == 404


def test_scripted_answers_come_in_order_then_normal(service, vapid):
    sub = service.new_subscription()
    service.script(sub, Reply(429, retry_after=2), Reply(410))
    with pytest.raises(WebPushException) as first:
        push(sub, vapid, {"n": 1})
    assert first.value.response.status_code == 429
    assert first.value.response.headers["Retry-After"] == "2"
    with pytest.raises(WebPushException) as second:
        push(sub, vapid, {"n": 2})
    assert second.value.response.status_code == 410
    assert "Retry-After" not in second.value.response.headers
    assert push(sub, vapid, {"n": 3}).status_code == 201
    assert [r.status for r in service.requests] == [429, 410, 201]
    assert [m.json() for m in sub.received] == [{"n": 3}]


def test_requests_record_timing_for_retry_after(service, vapid):
    sub = service.new_subscription()
    service.script(sub, Reply(429, retry_after=1))
    with pytest.raises(WebPushException) as refused:
        push(sub, vapid, {"n": 1})
    time.sleep(int(refused.value.response.headers["Retry-After"]))
    push(sub, vapid, {"n": 1})
    first, retry = service.requests
    assert (first.status, retry.status) == (429, 201)
    assert retry.monotonic - first.monotonic >= 1


def test_fail_all_hits_every_subscription(service, vapid):
    a, b = service.new_subscription(), service.new_subscription()
    service.fail_all(Reply(500), 2)
    for sub in (a, b):
        with pytest.raises(WebPushException) as failed:
            push(sub, vapid, {})
        assert failed.value.response.status_code == 500
    push(a, vapid, {"ok": 1})
    push(b, vapid, {"ok": 2})
    assert [m.json() for m in service.wait_for(2)] == [{"ok": 1}, {"ok": 2}]


def test_keep_alive_reuses_one_connection(service, vapid):
    sub = service.new_subscription()
    with requests.Session() as session:
        push(sub, vapid, {"n": 1}, requests_session=session)
        push(sub, vapid, {"n": 2}, requests_session=session)
    assert service.connections == 1
    push(sub, vapid, {"n": 3})
    push(sub, vapid, {"n": 4})
    assert service.connections == 3
    assert len(sub.wait_for(4)) == 4
