"""A local stand-in for Amazon SNS: it holds a self-signed signing certificate made here,
serves it over HTTP on 127.0.0.1 like SNS serves its own, signs messages the way SNS does
(RSA over the canonical string, SignatureVersion 1: SHA1, 2: SHA256), and records the
SubscribeURL requests the app makes to confirm a subscription."""

from __future__ import annotations

import base64
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

TOPIC = "arn:aws:sns:eu-central-1:123456789012:ses-bounces"
CERT_PATH = "/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"


def self_signed(key: rsa.RSAPrivateKey, days: int = 30) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return certificate.public_bytes(serialization.Encoding.PEM)


def canonical(message: dict[str, str]) -> bytes:
    """The string SNS signs, written out here from AWS's description (not the app's code)."""
    if message["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{n}\n{message[n]}\n" for n in names if n in message).encode()


_KEYS: list[rsa.RSAPrivateKey] = []


def signing_key() -> rsa.RSAPrivateKey:
    """One RSA key for the whole run: making a 2048-bit key takes a while."""
    if not _KEYS:
        _KEYS.append(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _KEYS[0]


class SnsStandIn:
    def __init__(self) -> None:
        self.key = signing_key()
        self.certificate = self_signed(self.key)
        self.stopped = False
        self.requests: list[str] = []  # paths (with query) the app fetched
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stand_in.requests.append(self.path)
                if self.path == CERT_PATH:
                    body = stand_in.certificate
                elif self.path.startswith("/?Action=ConfirmSubscription"):
                    body = b"<ConfirmSubscriptionResponse><ConfirmSubscriptionResult>" \
                           b"<SubscriptionArn>x</SubscriptionArn></ConfirmSubscriptionResult>" \
                           b"</ConfirmSubscriptionResponse>"  # fmt: skip
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> SnsStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.server.shutdown()
        self.server.server_close()

    @property
    def cert_url(self) -> str:
        return self.origin + CERT_PATH

    def signed(self, message: dict[str, str], version: str = "1",
               key: rsa.RSAPrivateKey | None = None) -> dict[str, str]:  # fmt: skip
        """The message with SignatureVersion, SigningCertURL and Signature, as SNS posts it."""
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = (key or self.key).sign(canonical(message), padding.PKCS1v15(), digest)
        return {**message, "SignatureVersion": version, "SigningCertURL": self.cert_url,
                "Signature": base64.b64encode(signature).decode()}  # fmt: skip
