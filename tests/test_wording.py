"""Words and times people read: plurals, the breaking prefix once, times in the site's zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from notifier.branding import Brand
from notifier.config import PROJECT_ROOT
from notifier.delivery.rendering import MessageRenderer
from notifier.local_time import local_time
from notifier.wording import breaking, plural


@pytest.mark.parametrize(
    ("count", "noun", "nouns", "expected"),
    [(0, "reader", None, "0 readers"), (1, "reader", None, "1 reader"),
     (2, "browser", None, "2 browsers"), (1204, "reader", None, "1,204 readers"),
     (1, "delivery", "deliveries", "1 delivery"), (3, "delivery", "deliveries", "3 deliveries")],
)  # fmt: skip
def test_plural(count, noun, nouns, expected):
    assert plural(count, noun, nouns) == expected


@pytest.mark.parametrize(
    ("title", "subject"),
    [("Ceasefire signed", "Breaking: Ceasefire signed"),
     ("Breaking: Ceasefire signed", "Breaking: Ceasefire signed"),
     ("BREAKING: Ceasefire", "BREAKING: Ceasefire"),
     ("Breakingviews column", "Breaking: Breakingviews column")],
)  # fmt: skip
def test_the_breaking_prefix_appears_once(title, subject):
    assert breaking(title) == subject


def test_an_alert_email_whose_headline_says_breaking_says_it_once():
    renderer = MessageRenderer(PROJECT_ROOT / "templates")
    alert = {"title": "Breaking: Ceasefire signed", "body": "", "url": "https://aze.media/x",
             "image_url": None}  # fmt: skip
    context = {"alert": alert, "site_name": "Aze.Media", "site_url": "https://aze.media/",
               "brand": Brand("Aze.Media", "https://aze.media/", "#b91c1c"),
               "view_url": "https://n/email/v", "web_version": False,
               "matched_categories": ["News"], "unsubscribe_url": "https://n/u",
               "manage_url": "https://n/m"}  # fmt: skip
    email = renderer.render_email("alert", "a@example.com", context)
    assert email.subject == "Breaking: Ceasefire signed"
    assert "Breaking: Breaking" not in email.html


@pytest.mark.parametrize(
    ("zone", "expected"),
    [("Asia/Baku", "4 Dec 2026, 09:00 Asia/Baku"), ("Europe/Berlin", "4 Dec 2026, 06:00 CET"),
     ("UTC", "4 Dec 2026, 05:00 UTC"), ("America/New_York", "4 Dec 2026, 00:00 EST")],
)  # fmt: skip
def test_times_are_shown_in_the_site_zone_with_the_zone(zone, expected):
    assert local_time(datetime(2026, 12, 4, 5, 0, tzinfo=UTC), ZoneInfo(zone)) == expected
    assert local_time(datetime(2026, 12, 4, 5, 0), ZoneInfo(zone)) == expected  # naive = UTC
