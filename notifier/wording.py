"""Words shown to people: counts with the right plural, and headlines with one prefix.

English has two plural forms ("1 reader", "2 readers", "0 readers"); nouns whose plural is not
noun + "s" pass it explicitly. Kept free of Flask so pages, emails and the CLI share it.
"""

from __future__ import annotations

BREAKING = "Breaking:"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """`plural(1, "reader")` -> "1 reader"; `plural(1204, "reader")` -> "1,204 readers"."""
    word = noun if count == 1 else (nouns or f"{noun}s")
    return f"{count:,} {word}"


def breaking(title: str) -> str:
    """The subject of a breaking alert: "Breaking: <headline>", unless the headline already
    says so (in any case), which would make "Breaking: Breaking: …"."""
    title = title.strip()
    if title.casefold().startswith(BREAKING.casefold()):
        return title
    return f"{BREAKING} {title}"
