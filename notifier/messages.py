"""Channel-neutral values: a rendered email, a push ready to encrypt, an email envelope ready
for the wire, and the outcome a channel reports for each. The one module channels and the
delivery path share: it imports neither of them (nor the domain).

Headers never carry CR/LF (notifier.email_headers).
"""

from __future__ import annotations

import email.policy
import email.utils
import enum
import json
import re
from dataclasses import dataclass, field, replace
from email.headerregistry import Address
from email.message import EmailMessage

import idna

from notifier.email_headers import header_value
from notifier.text import truncate

# Folding non-ASCII subjects into several encoded-words loses the spaces between them
# (CPython's folder puts them outside the words); long lines keep each header one word.
_POLICY = email.policy.SMTP.clone(max_line_length=998)


@dataclass(frozen=True)
class RenderedEmail:
    """An email ready to send or preview: what every email channel accepts."""

    to: str
    subject: str
    text: str
    html: str
    headers: dict[str, str] = field(default_factory=dict)

    def to_mime(self, mail_from: str) -> EmailMessage:
        message = EmailMessage(policy=_POLICY)
        message["From"] = mail_from
        to = wire_address(self.to)
        if to.isascii():
            message["To"] = Address(addr_spec=to)
        else:  # RFC 6532: written in UTF-8; the SMTP channel sends it with SMTPUTF8
            if _NOT_IN_ADDRESS.search(to):
                raise ValueError(f"not a plain email address: {to!r}")
            message["To"] = to
        # Written as they go on the wire: the library would decode encoded-words in them.
        message.set_raw("Subject", header_value("Subject", self.subject))
        message["Date"] = email.utils.formatdate(localtime=False)
        domain = email.utils.parseaddr(mail_from)[1].rpartition("@")[2] or "localhost"
        message["Message-ID"] = email.utils.make_msgid(domain=domain)
        for name, value in self.headers.items():
            message.set_raw(name, header_value(name, value))
        message.set_content(self.text)
        message.add_alternative(self.html, subtype="html")
        return message


_NOT_IN_ADDRESS = re.compile(r"[\x00-\x20<>,;\"()\\]")


def wire_address(address: str) -> str:
    """The address as it goes out. With an ASCII local part the domain is written in IDNA
    A-labels, which every mail server accepts ("zoe@例子.广告" -> "zoe@xn--fsqu00a.xn--4rr70v").
    A non-ASCII local part needs a server that offers SMTPUTF8 anyway, and with it the
    domain may stay as readers wrote it (RFC 6531). Raises ValueError for a domain IDNA
    cannot write."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii() or not local.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError as error:
        raise ValueError(f"the domain {domain!r} cannot be written in IDNA: {error}") from None


# RFC 8291: a 4096-byte record holds 86 bytes of header, a delimiter and a 16-byte tag.
PUSH_MAX_PLAINTEXT = 3993


@dataclass(frozen=True)
class PushMessage:
    """A web push ready to encrypt and send: what the push channel accepts."""

    endpoint: str
    p256dh: str
    auth: str
    payload: dict
    ttl: int
    urgency: str = "normal"  # RFC 8030: very-low, low, normal, high
    topic: str | None = None  # a newer push with the same topic replaces an undelivered one
    # The payload already as compact UTF-8 JSON (what plaintext makes of it), when the sender
    # made it from a template encoded once: then no JSON is encoded per browser.
    encoded: bytes | None = field(default=None, compare=False, repr=False)

    def plaintext(self, limit: int = PUSH_MAX_PLAINTEXT) -> bytes:
        """The payload as UTF-8 JSON within `limit` bytes: the body is cut first (at a word),
        then the image dropped; the title and link always survive."""
        if self.encoded is not None and len(self.encoded) <= limit:
            return self.encoded
        payload = dict(self.payload)
        data = push_json(payload)
        body = str(payload.get("body") or "")
        if len(data) > limit and body:
            fits, too_long = 0, len(body)  # binary search: the longest cut body that fits
            while too_long - fits > 1:
                middle = (fits + too_long) // 2
                if len(push_json({**payload, "body": truncate(body, middle)})) <= limit:
                    fits = middle
                else:
                    too_long = middle
            payload["body"] = truncate(body, fits) if fits > 1 else ""
            data = push_json(payload)
        for key in ("image", "icon", "manageUrl"):
            if len(data) > limit:
                payload[key] = None
                data = push_json(payload)
        return data if len(data) <= limit else data[:0]

    def shrunk(self) -> PushMessage:
        """A smaller version for a push service that answered 413."""
        payload = {**self.payload, "image": None, "body": truncate(self.payload["body"], 120)}
        return replace(self, payload=payload, encoded=None)


def push_json(payload: dict) -> bytes:
    """Compact UTF-8 JSON, as a push payload goes out."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class Outcome(enum.StrEnum):
    SENT = "sent"  # the server accepted it
    RETRY = "retry"  # temporary: try again later (SMTP 4xx, refused connection, timeout)
    GONE = "gone"  # the recipient no longer exists: never retry (SMTP 5xx at RCPT, push 404/410)
    FAILED = "failed"  # this message was refused for good, the recipient stays (push 400/403)


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    detail: str = ""
    retry_after: float | None = None  # seconds the server (or a hold on it) asked us to wait
    attempted: bool = True  # False: held back before any request went out (not a failure)

    @classmethod
    def sent(cls, detail: str = "accepted") -> SendResult:
        return cls(Outcome.SENT, detail)


@dataclass(frozen=True)
class EmailEnvelope:
    """An email ready for the wire: SMTP envelope addresses and the whole message as bytes
    (CRLF line ends, headers included). What the fast fan-out path hands to email channels."""

    mail_from: str  # bare address for MAIL FROM
    to: str  # bare address for RCPT TO
    data: bytes
