"""Amazon SNS's HTTP(S) delivery, as SES uses it for bounces and complaints: which messages
we take (the topics in SES_SNS_TOPIC_ARNS), and proof that SNS sent them.

SNS signs each message with RSA (SignatureVersion 1: SHA1, 2: SHA256) over a canonical
string of some of its fields; the certificate is fetched from SigningCertURL, which must be
https on a host SES_SNS_CERT_HOSTS admits (by default sns.<region>.amazonaws.com), so a
forger cannot point us at a certificate of their own. SNS proves only that SNS sent the
message, not whose topic it came from: anyone can publish to a topic of their own and
subscribe this URL to it, hence the topic list.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from notifier.inbound.webhooks import PayloadError, WebhookRefused, json_payload

DEFAULT_CERT_HOSTS = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
# The fields each type signs, in this order (AWS: "Verifying the signatures of Amazon SNS
# messages"); Subject only when the message has one.
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                 "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                "TopicArn", "Type"),
}  # fmt: skip
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
CERT_MAX_BYTES = 64 * 1024
CERT_CACHE_SIZE = 32  # SNS signs with one certificate per region at a time


class SubscriptionRemoved(Exception):
    """SNS confirmed that our subscription to a topic was removed: kept for ops to see."""


class RelayUnreachable(Exception):
    """SNS's certificate or confirmation URL could not be fetched: answered 503, SNS retries."""


def read_message(raw: bytes, topics: tuple[str, ...]) -> dict[str, str]:
    """The SNS message, if it is of a kind SNS sends and from one of our topics."""
    body = json_payload(raw)
    if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
        raise PayloadError("Send the SNS message: a JSON object of strings.")
    if body.get("Type") not in TYPES:
        raise PayloadError(f"Type must be one of {', '.join(TYPES)}.")
    if body.get("TopicArn") not in topics:
        raise WebhookRefused(403, "The message is from a topic not in SES_SNS_TOPIC_ARNS.")
    return body


def string_to_sign(message: dict[str, str]) -> bytes:
    lines = []
    for name in SIGNED_FIELDS[message["Type"]]:
        if name in message:
            lines += [name, message[name]]
        elif name != "Subject":
            raise WebhookRefused(403, f"The SNS message has no {name}, which it signs.")
    return "".join(f"{line}\n" for line in lines).encode("utf-8")


def allowed_url(url: str, host_pattern: re.Pattern[str]) -> bool:
    """https on a host the pattern admits. Plain http only for a loopback host the pattern
    admits, which the default never does: the tests' local stand-in for SNS."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host_pattern.fullmatch(host) or parts.username or parts.password:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and _loopback(host))


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead off the admitted hosts: it is an error here."""

    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def fetch(url: str, timeout: float, max_bytes: int = CERT_MAX_BYTES) -> bytes:
    """GET an admitted SNS URL; RelayUnreachable when it does not answer 200 in time."""
    try:
        with _opener.open(urllib.request.Request(url), timeout=timeout) as response:
            if response.status != 200:
                raise RelayUnreachable(f"{url} answered {response.status}")
            body = response.read(max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise RelayUnreachable(f"{urlsplit(url).netloc} could not be reached: {error}") from None
    if len(body) > max_bytes:
        raise RelayUnreachable(f"{url} sent more than {max_bytes} bytes")
    return body


class SigningCertificates:
    """SNS's signing certificates by URL, fetched once and kept until they expire."""

    def __init__(self, host_pattern: str, timeout: float,
                 fetcher: Callable[[str, float], bytes] = fetch) -> None:  # fmt: skip
        self.host_pattern = re.compile(host_pattern, re.IGNORECASE)
        self.timeout = timeout
        self.fetcher = fetcher
        self._keys: dict[str, tuple[rsa.RSAPublicKey, float]] = {}
        self._lock = threading.Lock()

    def key(self, url: str) -> rsa.RSAPublicKey:
        if not allowed_url(url, self.host_pattern):
            raise WebhookRefused(403, "SigningCertURL is not an https URL on an SNS host "
                                 "(SES_SNS_CERT_HOSTS).")  # fmt: skip
        with self._lock:
            known = self._keys.get(url)
        if known is not None and known[1] > time.time():
            return known[0]
        certificate = self._load(self.fetcher(url, self.timeout))
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise WebhookRefused(403, "The SNS signing certificate has no RSA key.")
        with self._lock:
            if len(self._keys) >= CERT_CACHE_SIZE:
                self._keys.clear()
            self._keys[url] = (public_key, certificate.not_valid_after_utc.timestamp())
        return public_key

    @staticmethod
    def _load(pem: bytes) -> x509.Certificate:
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise WebhookRefused(403, "SigningCertURL does not hold a PEM certificate.") from None
        now = datetime.now(UTC)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise WebhookRefused(403, "The SNS signing certificate is expired or not yet valid.")
        return certificate

    def verify(self, message: dict[str, str]) -> None:
        """WebhookRefused unless SNS signed this message."""
        algorithm = HASHES.get(message.get("SignatureVersion", ""))
        if algorithm is None:
            raise WebhookRefused(403, "SignatureVersion must be 1 or 2.")
        try:
            signature = base64.b64decode(message.get("Signature", ""), validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRefused(403, "The SNS signature is not base64.") from None
        key = self.key(message.get("SigningCertURL", ""))
        try:
            key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise WebhookRefused(403, "The SNS signature does not verify with its signing "
                                 "certificate.") from None  # fmt: skip

    def confirm(self, message: dict[str, str]) -> None:
        """Confirm a subscription SNS asks us to confirm: GET its SubscribeURL (an SNS host)."""
        url = message.get("SubscribeURL", "")
        if not allowed_url(url, self.host_pattern):
            raise WebhookRefused(403, "SubscribeURL is not an https URL on an SNS host "
                                 "(SES_SNS_CERT_HOSTS).")  # fmt: skip
        self.fetcher(url, self.timeout)
