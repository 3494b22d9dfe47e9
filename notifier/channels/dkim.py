"""DKIM signatures (RFC 6376) on every email we hand to the wire, for operators who send straight
to the internet rather than through a relay that signs.

Canonicalization and header hashing are dkimpy's; only the RSA operation is OpenSSL's
(cryptography): dkimpy's own pure-Python RSA costs about 7 ms per 2048-bit signature, OpenSSL
about 0.5 ms, and the fan-out signs every reader's message (bench/dkim_signing.py).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections import Counter

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from dkim.canonicalization import CanonicalizationPolicy

# What a reader sees and what the bulk-sender rules read: Gmail and Yahoo honour one-click
# unsubscribe only when List-Unsubscribe and List-Unsubscribe-Post are signed.
SIGNED_HEADERS = (
    "From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID",
    "List-Unsubscribe", "List-Unsubscribe-Post", "List-Id", "Feedback-ID",
    "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
)  # fmt: skip
# Signed once more than they occur, so nobody on the way can add one and keep the signature.
OVERSIGNED = frozenset(name.lower() for name in SIGNED_HEADERS if not name.startswith(("MIME",
                       "Content-")))  # fmt: skip
# Headers relaxed (a relay may rewrap them); the body simple, as dkimpy signs by default: our
# bodies are base64 or quoted-printable lines without trailing spaces, and relaxed body
# canonicalization (regular expressions over the whole body) would cost five times the RSA.
_POLICY = CanonicalizationPolicy.from_c_value(b"relaxed/simple")
_SIGNED = tuple(name.lower().encode() for name in SIGNED_HEADERS)


class DkimSigner:
    """Signs messages for `domain` with the RSA key published at `selector`._domainkey."""

    def __init__(self, domain: str, selector: str, private_key_pem: str) -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the DKIM key must be an RSA private key")
        self.key = key
        self.domain = domain.encode("ascii")
        self.selector = selector.encode("ascii")

    def signature(self, data: bytes) -> bytes:
        """The DKIM-Signature header line (with its CRLF) to put on top of `data`, a whole
        message with CRLF line ends."""
        headers, body = dkim.rfc822_parse(data)
        present = Counter(name.lower() for name, _ in headers)
        signed = [name for name in _SIGNED
                  for _ in range(present[name] + (name.decode() in OVERSIGNED))]  # fmt: skip
        body_hash = base64.b64encode(hashlib.sha256(_POLICY.canonicalize_body(body)).digest())
        unsigned = b"".join((
            b"v=1; a=rsa-sha256; c=relaxed/simple; d=", self.domain, b"; s=", self.selector,
            b"; t=", str(int(time.time())).encode(), b";\r\n h=", _folded_names(signed),
            b";\r\n bh=", body_hash, b"; b=",
        ))  # fmt: skip
        hasher = hashlib.sha256()
        canonical = _POLICY.canonicalize_headers(headers)
        dkim.hash_headers(hasher, _POLICY, canonical, signed, (_NAME, b" " + unsigned), {})
        raw = self.key.sign(hasher.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        value = unsigned + _folded_base64(base64.b64encode(raw))
        return _NAME + b": " + value + b"\r\n"

    def signed(self, data: bytes) -> bytes:
        return self.signature(data) + data

    def public_record(self) -> str:
        """The TXT record to publish at <selector>._domainkey.<domain>."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


_NAME = b"DKIM-Signature"


def new_private_key(bits: int = 2048) -> str:
    """A new RSA key as PEM text, for DKIM_PRIVATE_KEY."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _folded_names(names: list[bytes], width: int = 70) -> bytes:
    """h= folded only after a colon: a header name never has whitespace inside it."""
    lines, line = [], b""
    for name in names:
        if line and len(line) + len(name) + 1 > width:
            lines.append(line)
            line = b""
        line += (b":" if line or lines else b"") + name
    return b"\r\n ".join((*lines, line))


def _folded_base64(text: bytes, width: int = 72) -> bytes:
    """b= on continuation lines of its own: long lines are what some receivers mangle."""
    return b"".join(b"\r\n " + text[i : i + width] for i in range(0, len(text), width))
