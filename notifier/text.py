"""Text helpers every layer shares: one-line titles (headers never carry a line break) and
cutting text at a word."""

from __future__ import annotations


def truncate(text: str, max_chars: int) -> str:
    """Cut at a word boundary and mark the cut with an ellipsis."""
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    if text[max_chars - 1] != " ":
        cut = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return cut.rstrip(" ,.;:") + "…"


def single_line(text: str) -> str:
    """Titles end up in headers: no CR/LF or other line breaks ever survive."""
    return " ".join((text or "").split())
