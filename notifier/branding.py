"""The site's look from settings (name, logo, accent colour, postal address, privacy link),
checked once at startup and shared by pages and emails."""

from __future__ import annotations

import re
from dataclasses import dataclass

HEX_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
WHITE = "#ffffff"
MIN_CONTRAST = 4.5  # WCAG AA for normal text


def hex_colour(value: str) -> tuple[int, int, int]:
    """'#b91c1c' or '#b11' -> (185, 28, 28); ValueError for anything else."""
    if not HEX_COLOUR.fullmatch(value):
        raise ValueError(f"not a colour like #b91c1c: {value!r}")
    digits = value[1:]
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def _luminance(colour: str) -> float:
    """WCAG 2 relative luminance."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in hex_colour(colour))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(first: str, second: str) -> float:
    """WCAG 2 contrast ratio of two colours, from 1 to 21."""
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def accent_problem(colour: str) -> str | None:
    """Why this accent colour cannot be used, or None. It is the background of white button
    text and the colour of links on white, so it needs AA contrast against white."""
    try:
        hex_colour(colour)
    except ValueError:
        return f"must be a hex colour such as #b91c1c, got {colour!r}"
    ratio = contrast_ratio(colour, WHITE)
    if ratio < MIN_CONTRAST:
        return (
            f"{colour} has a contrast of {ratio:.2f}:1 against white; buttons (white text on "
            f"it) and links need at least {MIN_CONTRAST}:1, so choose a darker colour"
        )
    return None


@dataclass(frozen=True)
class Brand:
    """What pages and emails show of the site. Empty strings: not shown."""

    name: str
    url: str
    accent: str
    logo_url: str = ""
    postal_address: str = ""
    privacy_url: str = ""

    @classmethod
    def of(cls, settings) -> Brand:
        return cls(
            name=settings.site_name, url=settings.site_url, accent=settings.site_accent_color,
            logo_url=settings.site_logo_url, postal_address=settings.site_postal_address,
            privacy_url=settings.site_privacy_url,
        )  # fmt: skip
