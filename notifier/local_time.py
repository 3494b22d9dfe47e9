"""Every time shown to people: in the site's time zone, with the zone, in one format."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

FORMAT = "%-d %b %Y, %H:%M"


def zone_label(moment: datetime) -> str:
    """The zone's abbreviation where it has a real one ("CET", "UTC"), else its name
    ("Asia/Baku", whose abbreviation is only "+04")."""
    abbreviation = moment.tzname() or ""
    if abbreviation.isalpha():
        return abbreviation
    return str(getattr(moment.tzinfo, "key", abbreviation))


def local_time(moment: datetime, zone: ZoneInfo) -> str:
    """`4 Dec 2026, 09:00 Asia/Baku`; a naive value is UTC (as the database stores it)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    here = moment.astimezone(zone)
    return f"{here.strftime(FORMAT)} {zone_label(here)}"
