"""Render an email once, personalise it per reader: the fast path for fanning out one article.

The composer renders a variant's templates once, with placeholder tokens ("slots", e.g.
"NOTIFIERSLOT0UNSUBSCRIBEURL") where each reader's own values go, and hands the result to
`EmailLayout.prepare`. The layout encodes everything that is the same for every reader once
(From, Subject as RFC 2047, the extra headers, the MIME structure, the base64 of the static
text of both bodies); `envelope` then base64-encodes only one reader's values and the few
bytes around them, and joins bytes: about 10 µs for an article with 15 KB of HTML, wherever
the slots are (see _Body).

The result parses to the same message as `RenderedEmail(real values).to_mime(mail_from)`:
the same headers (From, To, Subject, Date, Message-ID, the extra headers, MIME-Version) and
a multipart/alternative with the text and HTML bodies in UTF-8. Both bodies are base64 with
76-character CRLF lines (byte for byte what base64.encodebytes makes of the substituted
body), so any value can be substituted without re-checking line lengths or 8-bit transport,
no line can start with "." or "From ", and the boundary (which holds "_", never found in
base64) cannot occur in a body. The message is 7-bit ASCII unless the address is not.

Values are substituted as given into the text body and the headers, and HTML-escaped
(`html.escape(value, quote=True)`) into the HTML body, which is where Jinja's autoescaping put
the slot token. No value may hold a line break or NUL (ValueError): a header must never carry
CR/LF, and a per-reader value never needs one.

Recipient addresses: a plain dot-atom address (what `email_validator` accepts by default,
including internationalised ones such as "ə@bakı.az") is supported. A non-ASCII address is
written as UTF-8 in the To header (RFC 6532) and its envelope must go out with SMTPUTF8: the
SMTP channel does that by itself for any non-ASCII envelope address, and answers FAILED when
the server does not offer SMTPUTF8. Anything else (quoted local parts, address literals,
display names) raises `ValueError`, so a caller can fall back to `to_mime()`.
"""

from __future__ import annotations

import binascii
import email.policy
import email.utils
import html
import re
import secrets
import time
from collections.abc import Sequence
from typing import NamedTuple

from notifier.email_headers import header_line
from notifier.messages import EmailEnvelope, RenderedEmail, wire_address
from notifier.text import single_line

# The policy RenderedEmail.to_mime uses (see notifier/messages.py): headers prepared here are
# folded and RFC 2047-encoded exactly as that slow path does.
_POLICY = email.policy.SMTP.clone(max_line_length=998)

_SLOT = re.compile(r"[A-Za-z0-9]+")
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII except ":" (RFC 5322 ftext)
# Everything str.splitlines() breaks on, and NUL.
_FORBIDDEN = re.compile("[\x00\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_ATOM = r"[^\x00-\x20\x7f-\x9f()<>\[\]:;@\\,.\"\s]+"
_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_ATOM}(?:\.{_ATOM})*")
_MESSAGE_ID = re.compile(r"<[!-;=?-~]+@[!-;=?-~]+>")  # printable ASCII without "<", ">"
_NEWLINES = re.compile(r"\r\n|\r|\n")
_RESERVED = frozenset(
    ("from", "to", "subject", "date", "message-id", "mime-version", "content-type",
     "content-transfer-encoding")
)  # fmt: skip
_B64_CHUNK = 57  # bytes per 76-character base64 line


def _base64_lines(data: bytes) -> bytes:
    """MIME base64: 76-character lines, each ended with CRLF (what base64.encodebytes does,
    with CRLF)."""
    b2a = binascii.b2a_base64
    chunk = _B64_CHUNK
    if len(data) <= chunk:  # most calls: the bytes around one reader's value
        return b2a(data)[:-1] + b"\r\n" if data else b""
    lines = [b2a(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    return b"".join(lines).replace(b"\n", b"\r\n")


def _fold(name: str, value: str) -> bytes:
    """One header as to_mime writes it (see notifier/email_headers.py), with its CRLF."""
    return header_line(name, value)


def _address_line(name: str, value: str) -> bytes:
    """An address header from our own settings (MAIL_FROM), folded as to_mime folds it."""
    return _POLICY.header_factory(name, value).fold(policy=_POLICY).encode("ascii")


class _Split(NamedTuple):
    """A string cut at its slot tokens: the text before the first slot, then each slot's
    index with the text that follows it up to the next slot."""

    head: str
    slots: list[tuple[int, str]]


class _Splitter:
    """Cuts a string at the slot tokens."""

    def __init__(self, slots: Sequence[str]) -> None:
        self.index = {slot: i for i, slot in enumerate(slots)}
        longest_first = sorted(slots, key=len, reverse=True)  # "SLOT10" before "SLOT1"
        alternatives = "|".join(re.escape(s) for s in longest_first)
        self.pattern = re.compile(f"({alternatives})") if slots else None

    def split(self, text: str) -> _Split:
        if self.pattern is None:
            return _Split(text, [])
        head, *rest = self.pattern.split(text)  # static, slot, static, slot, ..., static
        slots = [self.index[slot] for slot in rest[0::2]]
        return _Split(head, list(zip(slots, rest[1::2], strict=True)))


class _Template:
    """A header value: static pieces and the slot positions to fill; "".join(fill(values))."""

    __slots__ = ("pieces", "positions")

    def __init__(self, pieces: list, positions: list[tuple[int, int]]) -> None:
        self.pieces = pieces  # static pieces; None where a value goes
        self.positions = positions  # (index in pieces, slot number)

    @classmethod
    def of(cls, split: _Split) -> _Template:
        static: list = [split.head] if split.head else []
        positions: list[tuple[int, int]] = []
        for slot, text in split.slots:
            positions.append((len(static), slot))
            static.append(None)
            if text:
                static.append(text)
        return cls(static, positions)

    def fill(self, values: Sequence) -> list:
        filled = list(self.pieces)
        for at, slot in self.positions:
            filled[at] = values[slot]
        return filled


class _Body:
    """One text part, base64-encoded exactly as a plain encoder would encode it once the
    values are in (76-character lines), but with almost all of the work done once.

    Base64 maps each 57-byte chunk to one line, so bytes that sit at the same offset modulo
    57 encode to the same lines. The text before the first slot is at a fixed offset: its
    whole chunks are encoded at prepare time. A static stretch after a slot moves with the
    length of the values before it; its encoding is cached per offset modulo 57 (values of
    one slot tend to have few lengths, so few of the 57 variants are ever made). Per reader,
    only the values and the partial chunks around them are encoded."""

    __slots__ = ("carry", "prefix", "stretches")

    def __init__(self, content: str, splitter: _Splitter) -> None:
        # RenderedEmail.to_mime (set_content) ends every line with CRLF, the last one too.
        content = _NEWLINES.sub("\r\n", content)
        if not content.endswith("\r\n"):
            content += "\r\n"
        split = splitter.split(content)
        head = split.head.encode()
        cut = len(head) if not split.slots else len(head) // _B64_CHUNK * _B64_CHUNK
        self.prefix = _base64_lines(head[:cut])
        self.carry = head[cut:]  # the part of a chunk before the first slot
        self.stretches = [(slot, _Stretch(static.encode())) for slot, static in split.slots]

    def encode(self, values: Sequence[bytes]) -> list[bytes]:
        if not self.stretches:
            return [self.prefix]
        out = [self.prefix]
        pending = self.carry  # bytes not encoded yet; they start at a whole chunk
        for slot, stretch in self.stretches:
            pending = stretch.follow(pending + values[slot], out)
        out.append(_base64_lines(pending))
        return out


class _Stretch:
    """Static bytes after a slot, with their whole-chunk encodings cached per alignment."""

    __slots__ = ("data", "encoded")

    def __init__(self, data: bytes) -> None:
        self.data = data
        # offset modulo 57 -> (base64 lines, where they end in data); None: too short to cache
        self.encoded: dict[int, tuple[bytes, int]] | None = (
            {} if len(data) >= 2 * _B64_CHUNK else None
        )

    def follow(self, pending: bytes, out: list[bytes]) -> bytes:
        """Append what can be encoded of pending + data to out; return what is left over
        (less than a chunk, or all of it for a short stretch)."""
        data = self.data
        if self.encoded is None:
            return pending + data
        offset = len(pending) % _B64_CHUNK
        start = -offset % _B64_CHUNK  # bytes of data that complete pending's last chunk
        cached = self.encoded.get(offset)
        if cached is None:  # thread-safe enough: a race computes the same value twice
            end = start + (len(data) - start) // _B64_CHUNK * _B64_CHUNK
            cached = self.encoded[offset] = (_base64_lines(data[start:end]), end)
        lines, end = cached
        out.append(_base64_lines(pending + data[:start]))
        out.append(lines)
        return data[end:]


class EmailLayout:
    """A rendered email with slots, ready to become one reader's wire message fast.

    `prepare(rendered, mail_from, slots)` once per rendered variant; then
    `envelope(to, values, message_id=None)` per reader, `values` in the order of `slots`.
    """

    def __init__(
        self,
        mail_from: str,
        sender: str,
        domain: str,
        slot_count: int,
        subject: bytes | _Template,
        headers: list[bytes | tuple[str, _Template]],
        text: _Body,
        html_body: _Body,
        boundary: str,
    ) -> None:
        self.mail_from = mail_from
        self.sender = sender  # the bare address for MAIL FROM
        self.domain = domain
        self.slot_count = slot_count
        self._from_line = _address_line("From", mail_from)
        self._subject = subject
        self._headers = headers
        self._text = text
        self._html = html_body
        part = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        self._mime_start = (
            f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="{boundary}"\r\n'
            f"\r\n--{boundary}\r\n" + part.format("plain")
        ).encode("ascii")
        self._between = (f"--{boundary}\r\n" + part.format("html")).encode("ascii")
        self._end = f"--{boundary}--\r\n".encode("ascii")
        self._date_second = -1
        self._date_line = b""

    @classmethod
    def prepare(cls, rendered: RenderedEmail, mail_from: str, slots: Sequence[str]) -> EmailLayout:
        """`rendered` was rendered with the slot tokens in place of every per-reader value;
        `slots` are those tokens (ASCII letters and digits, so they survive HTML escaping and
        CSS inlining). `rendered.to` is ignored: each envelope names its reader."""
        slots = list(slots)
        for slot in slots:
            if not isinstance(slot, str) or not _SLOT.fullmatch(slot):
                raise ValueError(f"a slot must be ASCII letters and digits: {slot!r}")
        if len(set(slots)) != len(slots):
            raise ValueError("slots must be distinct")
        splitter = _Splitter(slots)
        from_header = _POLICY.header_factory("From", mail_from)
        if len(from_header.addresses) != 1:
            raise ValueError(f"MAIL_FROM must be one address: {mail_from!r}")
        sender = from_header.addresses[0].addr_spec
        domain = sender.rpartition("@")[2] or "localhost"

        subject_split = splitter.split(single_line(rendered.subject))
        subject: bytes | _Template = (
            _Template.of(subject_split)
            if subject_split.slots
            else _fold("Subject", subject_split.head)
        )
        headers: list[bytes | tuple[str, _Template]] = []
        for name, value in rendered.headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"not a header name: {name!r}")
            if name.lower() in _RESERVED:
                raise ValueError(f"the layout writes the {name} header itself")
            split = splitter.split(single_line(value))
            if not split.slots:
                line = _fold(name, split.head)
                if headers and isinstance(headers[-1], bytes):
                    headers[-1] += line
                else:
                    headers.append(line)
            else:
                headers.append((name, _Template.of(split)))
        return cls(
            mail_from=mail_from,
            sender=sender,
            domain=domain,
            slot_count=len(slots),
            subject=subject,
            headers=headers,
            text=_Body(rendered.text, splitter),
            html_body=_Body(rendered.html, splitter),
            boundary=f"=_notifier_{secrets.token_hex(12)}",
        )

    def envelope(
        self, to: str, values: Sequence[str], message_id: str | None = None
    ) -> EmailEnvelope:
        """One reader's message. `to` is their bare address; `values` replace the slots in
        order; `message_id` is "<id@domain>" (a fresh one when None). Raises ValueError for
        a value with a line break or NUL, a wrong number of values, an address that is not
        a plain (possibly internationalised) addr-spec, or a malformed Message-ID."""
        if len(values) != self.slot_count:
            raise ValueError(f"expected {self.slot_count} values, got {len(values)}")
        for value in values:
            if _FORBIDDEN.search(value):
                raise ValueError(f"a value must not contain a line break: {value!r}")
        to = wire_address(to)
        if not _ADDRESS.fullmatch(to):
            raise ValueError(f"not a plain email address: {to!r}")
        if message_id is None:
            message_id = self.message_id()
        elif not _MESSAGE_ID.fullmatch(message_id):
            raise ValueError(f"not a Message-ID: {message_id!r}")

        parts = [self._from_line, b"To: ", to.encode(), b"\r\n"]
        subject = self._subject
        parts.append(
            subject if isinstance(subject, bytes) else self._header("Subject", subject, values)
        )
        now = int(time.time())
        if now != self._date_second:  # formatdate costs more than everything else here
            self._date_line = f"Date: {email.utils.formatdate(now)}\r\n".encode("ascii")
            self._date_second = now
        parts += (self._date_line, b"Message-ID: ", message_id.encode("ascii"), b"\r\n")
        for header in self._headers:
            parts.append(header if isinstance(header, bytes) else self._header(*header, values))
        parts.append(self._mime_start)
        parts += self._text.encode([value.encode() for value in values])
        parts.append(self._between)
        parts += self._html.encode([html.escape(value, quote=True).encode() for value in values])
        parts.append(self._end)
        return EmailEnvelope(mail_from=self.sender, to=to, data=b"".join(parts))

    def message_id(self) -> str:
        """A new unique Message-ID in the sender's domain (cheaper than make_msgid)."""
        return f"<{time.time_ns():x}.{secrets.token_hex(8)}@{self.domain}>"

    @staticmethod
    def _header(name: str, template: _Template, values: Sequence[str]) -> bytes:
        return header_line(name, "".join(template.fill(values)))
