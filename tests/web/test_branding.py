"""Tab titles name the site, and /favicon.ico exists (browsers ask for it on every page)."""

from __future__ import annotations

import dataclasses
import re
import struct

import pytest

from notifier.branding import contrast_ratio
from notifier.config import ConfigError
from notifier.web import create_app
from tests.conftest import make_settings

PAGES = ["/", "/manage", "/editor/login", "/no-such-page"]


@pytest.mark.parametrize("path", PAGES)
def test_tab_titles_name_the_site_from_settings(settings, queue, path):
    client = create_app(dataclasses.replace(settings, site_name="Baku Daily"), queue=queue)
    page = client.test_client().get(path).text
    title = re.search(r"<title>([^<]*)</title>", page).group(1)
    assert title.endswith(" · Baku Daily") and "notifier" not in title.lower()
    assert 'class="brand">Baku Daily</a>' in page


def test_favicon_is_an_icon_holding_the_site_png(client):
    answer = client.get("/favicon.ico")
    assert answer.status_code == 200 and answer.mimetype == "image/x-icon"
    reserved, kind, count = struct.unpack("<HHH", answer.data[:6])
    assert (reserved, kind, count) == (0, 1, 1)
    width, height, _, _, _, _, size, offset = struct.unpack("<BBBBHHII", answer.data[6:22])
    assert (width, height) == (192, 192) and offset == 22
    assert answer.data[offset:].startswith(b"\x89PNG\r\n\x1a\n") and len(answer.data) == 22 + size
    assert 'href="/favicon.ico"' in client.get("/").text


# ---- logo, accent colour, postal address and privacy link from settings ----------------


def _branded(settings, queue, **brand):
    return create_app(dataclasses.replace(settings, **brand), queue=queue).test_client()


def test_reader_pages_show_the_logo_address_and_privacy_link(settings, queue):
    client = _branded(
        settings, queue, site_logo_url="https://aze.media/logo.png",
        site_postal_address="1 Istiqlaliyyat St, Baku AZ1001, Azerbaijan",
        site_privacy_url="https://aze.media/privacy/",
    )  # fmt: skip
    for path in ("/", "/manage", "/unsubscribe/broken"):
        page = client.get(path).text
        assert '<img src="https://aze.media/logo.png" alt="Aze.Media"' in page
        assert "1 Istiqlaliyyat St, Baku AZ1001, Azerbaijan" in page
        assert '<a href="https://aze.media/privacy/">Privacy policy</a>' in page


def test_without_them_the_name_is_the_wordmark_and_nothing_empty_shows(client):
    page = client.get("/").text
    assert 'class="brand">Aze.Media</a>' in page and "<img" not in page
    assert "Privacy policy" not in page and 'class="postal"' not in page


def test_the_accent_colour_reaches_pages_through_a_style_sheet_of_ours(settings, queue):
    client = _branded(settings, queue, site_accent_color="#1d4ed8")
    page = client.get("/").text
    href = re.search(r'href="(/brand\.css\?v=[0-9a-f]+)"', page).group(1)
    sheet = client.get(href)
    assert sheet.status_code == 200 and sheet.mimetype == "text/css"
    assert "--accent: #1d4ed8;" in sheet.text
    assert "style=" not in page and "<style" not in page, "pages allow no inline style"
    other = _branded(settings, queue, site_accent_color="#7c2d12").get("/").text
    assert re.search(r'href="(/brand\.css\?v=[0-9a-f]+)"', other).group(1) != href, "cache"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SITE_ACCENT_COLOR": "red"}, "SITE_ACCENT_COLOR must be a hex colour such as #b91c1c"),
        ({"SITE_ACCENT_COLOR": "#b91c1"}, "SITE_ACCENT_COLOR must be a hex colour"),
        ({"SITE_ACCENT_COLOR": "#fbbf24"}, r"contrast of 1\.\d\d:1 against white"),
        ({"SITE_LOGO_URL": "javascript:alert(1)"}, "SITE_LOGO_URL must be an http"),
        ({"SITE_LOGO_URL": "logo.png"}, "or a path on this site"),
        ({"SITE_PRIVACY_URL": "aze.media/privacy"}, "SITE_PRIVACY_URL must be an http"),
    ],
)
def test_a_bad_brand_setting_stops_startup_with_a_sentence(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        make_settings(tmp_path, **env)


def test_brand_settings_are_read_and_tidied(tmp_path):
    settings = make_settings(
        tmp_path, SITE_ACCENT_COLOR="#1D4ED8", SITE_LOGO_URL="/static/icon-192.png",
        SITE_POSTAL_ADDRESS="  1 Main St\n  Baku  ",
    )  # fmt: skip
    assert settings.site_accent_color == "#1d4ed8"
    assert settings.site_logo_url == "http://127.0.0.1:8000/static/icon-192.png", "absolute"
    assert settings.site_postal_address == "1 Main St Baku"


@pytest.mark.parametrize(
    ("first", "second", "ratio"),
    [("#ffffff", "#000000", 21.0), ("#b91c1c", "#ffffff", 6.47), ("#767676", "#fff", 4.54)],
)
def test_contrast_ratio_follows_wcag(first, second, ratio):
    assert round(contrast_ratio(first, second), 2) == ratio
