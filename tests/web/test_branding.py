"""Tab titles name the site, and /favicon.ico exists (browsers ask for it on every page)."""

from __future__ import annotations

import dataclasses
import re
import struct

import pytest

from notifier.web import create_app

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
