"""The development mailbox pages: new mail shows up by itself, links leave the preview frame,
and every header and the raw source of a message can be read."""

from __future__ import annotations

import dataclasses
import re
from email.message import EmailMessage

import pytest

from notifier.channels.dev_mailbox import DevMailboxChannel
from notifier.web import create_app
from notifier.web.dev import links_open_outside

HTML = (
    '<p>Hello <a href="https://aze.media/a">story</a> and '
    '<a target="_self" href="https://aze.media/b" class="button">more</a> '
    "<abbr>AZ</abbr> <A HREF='https://aze.media/c'>upper</A></p>"
)


@pytest.fixture
def dev_app(settings, queue):
    return create_app(dataclasses.replace(settings, dev_mode=True), queue=queue)


def deliver(app, subject: str) -> str:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "news@aze.test", "r@example.com", subject
    message["X-Notifier-Test"] = "kept"
    message.set_content("Read it: https://aze.media/a")
    message.add_alternative(HTML, subtype="html")
    box = DevMailboxChannel(app.extensions["notifier"]["settings"].dev_mailbox_dir).open()
    result = box.send(message)
    box.close()
    return result.detail.rsplit(" ", 1)[1]


def test_every_link_opens_in_a_new_tab():
    out = links_open_outside(HTML)
    anchors = re.findall(r"<a\b[^>]*>", out, re.I)
    assert len(anchors) == 3
    for anchor in anchors:
        assert anchor.startswith('<a target="_blank" rel="noopener"')
        assert "_self" not in anchor and anchor.count("target=") == 1
    assert "<abbr>AZ</abbr>" in out and 'class="button"' in out


def test_the_list_carries_a_state_that_changes_when_mail_arrives(dev_app):
    client = dev_app.test_client()
    empty = client.get("/dev/mailbox/state").json
    page = client.get("/dev/mailbox").text
    assert f'data-state="{empty["state"]}"' in page and 'data-poll-ms="2000"' in page
    assert "/static/dev-mailbox.js" in page and '<meta http-equiv="refresh"' in page
    deliver(dev_app, "Confirm your subscription")
    after = client.get("/dev/mailbox/state").json
    assert after["count"] == 1 and after["state"] != empty["state"]
    assert f'data-state="{after["state"]}"' in client.get("/dev/mailbox").text


def test_a_message_shows_all_headers_and_its_raw_source(dev_app):
    client = dev_app.test_client()
    key = deliver(dev_app, "Breaking: Ceasefire")
    page = client.get(f"/dev/mailbox/{key}").text
    assert "<th>X-Notifier-Test</th>" in page and "kept" in page
    srcdoc = re.search(r'srcdoc="([^"]*)"', page).group(1)
    assert "target=&#34;_blank&#34;" in srcdoc or "target=&quot;_blank&quot;" in srcdoc
    assert 'target="_blank"' in page.split('<pre class="text">')[1]  # plain-text links too
    source = client.get(f"/dev/mailbox/{key}/source")
    assert source.status_code == 200 and source.mimetype == "text/plain"
    assert b"X-Notifier-Test: kept" in source.data and b"Content-Type: multipart/alternative" in (
        source.data
    )
    assert client.get("/dev/mailbox/nope/source").status_code == 404


def test_the_mailbox_pages_exist_only_in_dev_mode(client):
    assert client.get("/dev/mailbox").status_code == 404
