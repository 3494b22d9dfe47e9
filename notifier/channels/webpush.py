"""Web push (RFC 8030) with aes128gcm payloads (RFC 8291) and VAPID (RFC 8292).

pywebpush encrypts each message for its subscription; we send it ourselves through one
pooled HTTP session per batch so connections are reused, the VAPID JWT is signed once per
push-service origin and hour, every request has timeouts, redirects are never followed
and environment proxies never apply. Each answer becomes an outcome:

    201/202 sent · 404/410 gone (the browser dropped it) · 413 shrink and retry once ·
    429/5xx/timeouts retry later, honouring Retry-After per push service ·
    400/401/403 our request or keys are wrong: failed, the subscription is kept, and loud.
"""

from __future__ import annotations

import logging
import time
from email.utils import parsedate_to_datetime

import requests
from pywebpush import WebPusher, WebPushException

from notifier.channels.base import Outcome, SendResult
from notifier.domain.push_subscriptions import EndpointPolicy, PushSubscriptionError
from notifier.logs import redact
from notifier.messages import PushMessage
from notifier.push_backoff import LocalBackoff, SharedBackoff
from notifier.vapid import VapidSigner

log = logging.getLogger(__name__)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as delay-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class WebPushChannel:
    name = "push"

    def __init__(
        self,
        signer: VapidSigner,
        policy: EndpointPolicy,
        connect_timeout: float,
        read_timeout: float,
        backoff: SharedBackoff | LocalBackoff | None = None,
    ) -> None:
        self.signer = signer
        self.policy = policy
        self.timeout = (connect_timeout, read_timeout)
        self.backoff = backoff or LocalBackoff()

    def open(self) -> WebPushSession:
        return WebPushSession(self)


class WebPushSession:
    def __init__(self, channel: WebPushChannel) -> None:
        self.channel = channel
        self.http = requests.Session()
        self.http.trust_env = False  # no proxies or .netrc from the environment

    def send(self, message: PushMessage) -> SendResult:
        try:
            self.channel.policy.check_addresses(message.endpoint)
            origin = self.channel.policy.origin_of(message.endpoint)
        except PushSubscriptionError as error:
            return SendResult(Outcome.FAILED, f"endpoint refused at send time: {error}")
        wait = self.channel.backoff.wait_seconds(origin)
        if wait > 0:  # this push service asked us (any worker) to back off: do not hammer it
            return SendResult(Outcome.RETRY, f"{origin} asked to wait", retry_after=wait)
        result = self._post(message, origin)
        if result.outcome is Outcome.FAILED and result.detail.startswith("HTTP 413"):
            result = self._post(message.shrunk(), origin)
        if result.retry_after:
            self.channel.backoff.block(origin, result.retry_after, result.detail)
        return result

    def _post(self, message: PushMessage, origin: str) -> SendResult:
        subscription = {"endpoint": message.endpoint,
                        "keys": {"p256dh": message.p256dh, "auth": message.auth}}  # fmt: skip
        try:
            body = WebPusher(subscription).encode(message.plaintext(), "aes128gcm")["body"]
        except (WebPushException, ValueError, TypeError) as error:
            return SendResult(Outcome.FAILED, f"cannot encrypt for this subscription: {error}")
        headers = {
            "Authorization": self.channel.signer.authorization(origin),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(message.ttl),
            "Urgency": message.urgency,
        }
        if message.topic:
            headers["Topic"] = message.topic
        try:
            response = self.http.post(
                message.endpoint,
                data=body,
                headers=headers,
                timeout=self.channel.timeout,
                allow_redirects=False,
            )
        except requests.Timeout as error:
            return SendResult(Outcome.RETRY, f"timeout talking to {origin}: {error}")
        except requests.RequestException as error:
            return SendResult(Outcome.RETRY, f"cannot reach {origin}: {error}")
        return self._outcome(response, origin)

    def _outcome(self, response: requests.Response, origin: str) -> SendResult:
        status = response.status_code
        detail = f"HTTP {status} from {origin}: {' '.join(response.text.split())[:200]}"
        if 200 <= status < 300:
            return SendResult.sent(f"HTTP {status}")
        if status in (404, 410):
            return SendResult(Outcome.GONE, detail)
        if status == 429 or status >= 500:
            delay = retry_after_seconds(response.headers.get("Retry-After"))
            return SendResult(Outcome.RETRY, detail, retry_after=delay)
        if status in (400, 401, 403):
            log.error("push service rejected our request (check VAPID keys): %s", redact(detail))
        return SendResult(Outcome.FAILED, detail)

    def close(self) -> None:
        self.http.close()
