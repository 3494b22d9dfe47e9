"""The one way a header value of ours is written: from decoded, single-line text.

Titles come from feeds, the webhook and editors. Handing them to the email library as they
are lets it decode any RFC 2047 encoded-word inside them ("=?utf-8?q?Hi=0D=0ABcc:_x?=")
into real line breaks, which then end the header or start a new one. Here a value is made
one line first (CR, LF, NEL, U+2028 and the rest become spaces), and anything that is not
plain printable ASCII, or that contains "=?", is written as base64 encoded-words of our own,
so what a reader's mail program decodes is exactly the text we were given.
"""

from __future__ import annotations

import base64
import re

from notifier.text import single_line

MAX_LINE = 998  # RFC 5322: longest line, CRLF excluded
_WORD_BYTES = 45  # 45 bytes of UTF-8 are 60 base64 characters: a 72-character encoded-word
# "Aze.Media <news.example.com>" (List-Id): only the words before the angle brackets are text.
_TRAILING_ID = re.compile(r" <[!-;=?-~]{1,900}>\Z")


def _plain(text: str) -> bool:
    """Printable ASCII only (space to "~": what isprintable leaves of ASCII), and no "=?".
    Checked in C: every notification's List-Unsubscribe URL passes through here."""
    return text.isascii() and text.isprintable() and "=?" not in text


def header_value(name: str, value: str) -> str:
    """The value as it goes on the wire after "Name: ": plain text when it is plain
    printable ASCII, else encoded-words folded onto continuation lines."""
    text = single_line(value)
    if _plain(text) and len(name) + 2 + len(text) <= MAX_LINE:
        return text
    return "\r\n ".join(
        f"=?utf-8?b?{base64.b64encode(chunk).decode()}?=" for chunk in _chunks(text)
    )


def header_line(name: str, value: str) -> bytes:
    """A whole header line with its CRLF."""
    return f"{name}: {header_value(name, value)}\r\n".encode("ascii")


def _chunks(text: str):
    """UTF-8 pieces of at most _WORD_BYTES, never splitting a character."""
    piece = b""
    for char in text:
        encoded = char.encode("utf-8", "replace")
        if len(piece) + len(encoded) > _WORD_BYTES:
            yield piece
            piece = b""
        piece += encoded
    if piece or not text:
        yield piece
