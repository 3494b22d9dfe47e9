"""The fan-out email: rendered once with slots, personalised per reader, same as the slow path.

Every check parses the bytes an SMTP server would get and compares them with what
`RenderedEmail.to_mime` makes when the real templates are rendered with the real values.
"""

from __future__ import annotations

import base64
import email.policy
import re
from dataclasses import replace
from email.message import EmailMessage
from email.parser import BytesParser
from types import SimpleNamespace

import pytest

from notifier.branding import Brand
from notifier.config import PROJECT_ROOT
from notifier.delivery.email_layout import EmailLayout
from notifier.delivery.rendering import MessageRenderer
from notifier.messages import EmailEnvelope, RenderedEmail

MAIL_FROM = "Aze.Media <news@aze.test>"
TITLE = "Ərəfədə ə ğ ş ı — Новости 🚀"
SLOTS = ["NOTIFIERSLOT0UNSUBSCRIBEURL", "NOTIFIERSLOT1MANAGEURL"]
READERS = {
    "aysel@example.com": [
        "https://aze.media/unsubscribe/eyJzIjo0Mn0.Zm9v?c=1&c=2",
        "https://aze.media/preferences/eyJzIjo0Mn0.YmFy",
    ],
    "boris@example.ru": [
        "https://aze.media/unsubscribe/eyJzIjo3fQ.cXV4?c=3&c=4",
        "https://aze.media/preferences/eyJzIjo3fQ.YmF6",
    ],
}
PARSER = BytesParser(policy=email.policy.default)


@pytest.fixture(scope="module")
def renderer() -> MessageRenderer:
    return MessageRenderer(PROJECT_ROOT / "templates")


def notice(kind: str):
    """What Composer.email puts in the context: an Article or an Alert row."""
    if kind == "alert":
        return SimpleNamespace(
            title=TITLE,
            body="Hər iki tərəf razılaşdı. Обе стороны согласились <сегодня> & подписали.",
            url="https://aze.media/breaking/?id=1&lang=az",
            image_url="https://aze.media/wp-content/uploads/breaking.jpg",
        )
    return SimpleNamespace(
        title=TITLE,
        link="https://aze.media/ərəfədə/?utm=1&lang=az",
        image_url="https://cdn.aze.media/port.jpg",
        summary="Dəmir yolu ilə daşımalar artıb. Грузоперевозки растут 🚀 " * 6,
    )


def render(renderer: MessageRenderer, kind: str, to: str, unsubscribe: str, manage: str):
    """The email as Composer.email renders it, for these two per-reader values."""
    context = {
        "site_name": "Aze.Media",
        "site_url": "https://aze.media/",
        "brand": Brand("Aze.Media", "https://aze.media/", "#b91c1c"),
        "view_url": "https://aze.media/email/eyJrIjoiYXJ0aWNsZSJ9.dmlldw",
        "web_version": False,
        kind: notice(kind),
        "matched_categories": ["Energetika", "Xəbərlər"],
        "unsubscribe_url": unsubscribe,
        "manage_url": manage,
    }
    headers = {
        "List-Unsubscribe": f"<{unsubscribe}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": "Aze.Media <news.aze.media>",
    }
    return renderer.render_email(kind, to, context, headers)


def parse(data: bytes) -> EmailMessage:
    return PARSER.parsebytes(data)


def bodies(message: EmailMessage) -> tuple[str, str]:
    return (
        message.get_body(("plain",)).get_content(),
        message.get_body(("html",)).get_content(),
    )


def layout_for(renderer: MessageRenderer, kind: str = "article") -> EmailLayout:
    return EmailLayout.prepare(render(renderer, kind, "any@example.com", *SLOTS), MAIL_FROM, SLOTS)


# --------------------------------------------------------------------------- same as to_mime


@pytest.mark.parametrize("kind", ["article", "alert"])
def test_each_readers_envelope_parses_to_what_the_slow_path_makes(renderer, kind):
    layout = layout_for(renderer, kind)
    for to, values in READERS.items():
        envelope = layout.envelope(to, values, "<1.fanout@aze.test>")
        assert (envelope.mail_from, envelope.to) == ("news@aze.test", to)
        fast = parse(envelope.data)
        slow = parse(render(renderer, kind, to, *values).to_mime(MAIL_FROM).as_bytes())

        assert fast.keys() == slow.keys()  # the same headers, in the same order
        for name in fast:
            if name not in ("Date", "Message-ID", "Content-Type"):  # made per message
                assert str(fast[name]) == str(slow[name]), name
        assert fast["Subject"].endswith(TITLE)
        assert fast["To"] == to
        assert fast["Message-ID"] == "<1.fanout@aze.test>"
        assert fast["List-Unsubscribe"] == f"<{values[0]}>"
        assert abs(fast["Date"].datetime - slow["Date"].datetime).total_seconds() < 5
        assert fast.get_content_type() == "multipart/alternative"
        fast_parts = [(p.get_content_type(), p.get_content_charset()) for p in fast.iter_parts()]
        assert fast_parts == [("text/plain", "utf-8"), ("text/html", "utf-8")]
        assert bodies(fast) == bodies(slow)  # character for character
        assert all(not part.defects for part in fast.walk())


def test_per_reader_links_are_in_both_bodies_and_escaped_in_html(renderer):
    layout = layout_for(renderer)
    to, (unsubscribe, manage) = next(iter(READERS.items()))
    text, html = bodies(parse(layout.envelope(to, [unsubscribe, manage]).data))
    assert f"Unsubscribe: {unsubscribe}\r\n" in text
    assert f"Manage your subscription: {manage}\r\n" in text
    assert f'href="{unsubscribe.replace("&", "&amp;")}"' in html
    assert f'href="{manage}"' in html
    assert unsubscribe not in html  # the raw "&" never reaches the HTML
    assert "NOTIFIERSLOT" not in text + html
    assert TITLE in text and TITLE in html


def test_html_special_characters_in_a_value_are_escaped_in_html_only(renderer):
    layout = layout_for(renderer)
    value = 'https://aze.media/u?a=1&b="2"<x>'
    text, html = bodies(parse(layout.envelope("r@example.com", [value, "m"]).data))
    assert f"Unsubscribe: {value}\r\n" in text
    assert 'href="https://aze.media/u?a=1&amp;b=&quot;2&quot;&lt;x&gt;"' in html


def test_readers_messages_differ_only_in_their_own_values(renderer):
    layout = layout_for(renderer)
    (to_a, values_a), (to_b, values_b) = READERS.items()
    a = parse(layout.envelope(to_a, values_a, "<same@aze.test>").data)
    b = parse(layout.envelope(to_b, values_b, "<same@aze.test>").data)

    def swapped(text: str) -> str:
        for mine, theirs in zip(values_a, values_b, strict=True):
            text = text.replace(mine, theirs).replace(mine.replace("&", "&amp;"),
                                                      theirs.replace("&", "&amp;"))  # fmt: skip
        return text.replace(to_a, to_b)

    assert [(k, swapped(str(v))) for k, v in a.items() if k != "Date"] == [
        (k, str(v)) for k, v in b.items() if k != "Date"
    ]
    assert [swapped(body) for body in bodies(a)] == list(bodies(b))
    assert bodies(a) != bodies(b)


def test_the_wire_form_is_plain_seven_bit_mime_with_short_crlf_lines(renderer):
    layout = layout_for(renderer)
    data = layout.envelope("r@example.com", next(iter(READERS.values()))).data
    assert data.isascii()  # the Subject is RFC 2047, the bodies base64
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    head, _, body = data.partition(b"\r\n\r\n")
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    body_lines = body.split(b"\r\n")
    assert all(len(line) <= 76 for line in body_lines)
    assert not any(line.startswith(b".") for line in data.split(b"\r\n"))
    boundary = parse(data).get_boundary()
    assert sum(line.startswith(f"--{boundary}".encode()) for line in body_lines) == 3


def test_a_long_html_body_round_trips(renderer):
    """Bodies far longer than one base64 line, the slot at the end (the prefix is encoded
    once) and in the middle of a multi-byte stretch."""
    rendered = render(renderer, "article", "x@example.com", *SLOTS)
    filler = "<p>Uzun mətn — длинный текст 🚀 ə ğ ş ı</p>\n" * 400
    rendered = replace(rendered, html=rendered.html.replace("<body", filler + "<body", 1))
    layout = EmailLayout.prepare(rendered, MAIL_FROM, SLOTS)
    to, values = next(iter(READERS.items()))
    fast = parse(layout.envelope(to, values).data)
    expected = replace(
        rendered,
        to=to,
        html=rendered.html.replace(SLOTS[0], values[0].replace("&", "&amp;")).replace(
            SLOTS[1], values[1]
        ),
        text=rendered.text.replace(SLOTS[0], values[0]).replace(SLOTS[1], values[1]),
        headers={**rendered.headers, "List-Unsubscribe": f"<{values[0]}>"},
    )
    assert bodies(fast) == bodies(parse(expected.to_mime(MAIL_FROM).as_bytes()))
    assert len(bodies(fast)[1]) > 20_000


# --------------------------------------------------------------------------- what is refused


@pytest.mark.parametrize(
    "bad", ["https://x/\r\nBcc: all@example.com", "a\nb", "a\rb", "a\x00b", "a\u2028b"]
)
def test_a_value_with_a_line_break_is_refused(renderer, bad):
    layout = layout_for(renderer)
    with pytest.raises(ValueError, match="line break"):
        layout.envelope("r@example.com", [bad, "https://aze.media/m"])
    with pytest.raises(ValueError, match="line break"):
        layout.envelope("r@example.com", ["https://aze.media/u", bad])


@pytest.mark.parametrize(
    "to",
    ["", "no-at-sign", "a b@example.com", "<a@example.com>", "Reader <a@example.com>",
     "a@example.com\r\nBcc: x@example.com", '"quoted"@example.com', "a@b@c"],
)  # fmt: skip
def test_anything_but_a_plain_address_is_refused(renderer, to):
    with pytest.raises(ValueError, match="address"):
        layout_for(renderer).envelope(to, ["u", "m"])


def test_the_number_of_values_and_the_message_id_are_checked(renderer):
    layout = layout_for(renderer)
    with pytest.raises(ValueError, match="expected 2 values"):
        layout.envelope("r@example.com", ["only one"])
    for bad in ["no-brackets@aze.test", "<a b@aze.test>", "<x@aze.test>\r\nBcc: y"]:
        with pytest.raises(ValueError, match="Message-ID"):
            layout.envelope("r@example.com", ["u", "m"], bad)


def test_fresh_message_ids_are_unique_and_in_the_senders_domain(renderer):
    layout = layout_for(renderer)
    ids = {parse(layout.envelope("r@example.com", ["u", "m"]).data)["Message-ID"] for _ in "ab"}
    assert len(ids) == 2
    assert all(re.fullmatch(r"<[0-9a-f.]+@aze\.test>", i) for i in ids)


def test_prepare_refuses_bad_slots_and_headers_the_layout_writes():
    rendered = RenderedEmail("x@example.com", "S", "t", "<p>h</p>")
    with pytest.raises(ValueError, match="letters and digits"):
        EmailLayout.prepare(rendered, MAIL_FROM, ["SLOT-1"])
    with pytest.raises(ValueError, match="distinct"):
        EmailLayout.prepare(rendered, MAIL_FROM, ["SLOTA", "SLOTA"])
    with pytest.raises(ValueError, match="writes the Date header"):
        EmailLayout.prepare(replace(rendered, headers={"Date": "now"}), MAIL_FROM, [])
    with pytest.raises(ValueError, match="header name"):
        EmailLayout.prepare(replace(rendered, headers={"Bad Name": "x"}), MAIL_FROM, [])


# --------------------------------------------------------------------------- the rarer shapes


def test_a_slot_in_the_subject_and_a_non_ascii_header_value_are_encoded_per_reader():
    rendered = RenderedEmail(
        "x@example.com",
        "Salam SLOTNAME — Новости",
        "Salam SLOTNAME\n",
        "<p>Salam SLOTNAME</p>",
        {"X-Reader": "SLOTNAME oxucu", "List-Id": "Azə Media <news.aze.test>"},
    )
    layout = EmailLayout.prepare(rendered, "Azə Media <news@aze.test>", ["SLOTNAME"])
    fast = parse(layout.envelope("r@example.com", ["Rəşad & Co"]).data)
    slow_email = replace(
        rendered,
        to="r@example.com",
        subject="Salam Rəşad & Co — Новости",
        text="Salam Rəşad & Co\n",
        html="<p>Salam Rəşad &amp; Co</p>",
        headers={"X-Reader": "Rəşad & Co oxucu", "List-Id": "Azə Media <news.aze.test>"},
    )
    slow = parse(slow_email.to_mime("Azə Media <news@aze.test>").as_bytes())
    for name in ("From", "Subject", "X-Reader", "List-Id"):
        assert str(fast[name]) == str(slow[name]), name
    assert fast["Subject"] == "Salam Rəşad & Co — Новости"
    assert bodies(fast) == bodies(slow)


def test_a_layout_without_slots_and_with_empty_bodies():
    layout = EmailLayout.prepare(RenderedEmail("x@example.com", "", "", ""), MAIL_FROM, [])
    message = parse(layout.envelope("r@example.com", []).data)
    slow = parse(RenderedEmail("r@example.com", "", "", "").to_mime(MAIL_FROM).as_bytes())
    assert bodies(message) == bodies(slow) == ("\r\n", "\r\n")


def test_a_non_ascii_address_is_written_as_utf8_for_smtputf8():
    """RFC 6532: the To header carries the address as it is; the channel sends such an
    envelope with SMTPUTF8 (see tests/channels/test_smtp.py)."""
    layout = EmailLayout.prepare(RenderedEmail("x", TITLE, "ə\n", "<p>ə</p>"), MAIL_FROM, [])
    envelope = layout.envelope("rəşad@bakı.az", [])
    assert envelope == EmailEnvelope("news@aze.test", "rəşad@bakı.az", envelope.data)
    assert "To: rəşad@bakı.az\r\n".encode() in envelope.data
    message = parse(envelope.data)
    assert message["To"] == "rəşad@bakı.az"
    assert message["Subject"] == TITLE


@pytest.mark.parametrize(
    "html",
    [
        "SLOTA" + "ə-🚀 " * 400 + "SLOTB" + "x" * 300,  # a slot first, long stretches after
        "<p>" + "ş" * 1000 + "</p>SLOTA<p>" + "y" * 120 + "</p>SLOTB",  # a short stretch
        "SLOTASLOTB" + "z" * 500,  # two slots side by side
        "<p>" + "q" * 114 + "SLOTA" + "w" * 114 + "SLOTB</p>",  # on whole-chunk bounds
    ],
    ids=["slot-first", "short-stretch", "adjacent", "aligned"],
)
def test_bodies_are_encoded_as_a_plain_base64_encoder_would_for_any_value_lengths(html):
    """Cached encodings of the static stretches must splice in exactly: the part must be
    byte for byte what base64.encodebytes makes of the whole substituted body."""
    layout = EmailLayout.prepare(RenderedEmail("x", "S", html, html), MAIL_FROM, ["SLOTA", "SLOTB"])
    for length_a, length_b in [(a, b) for a in range(0, 60, 7) for b in range(0, 60, 5)]:
        values = ["&" * (length_a % 3) + "a" * length_a, "é" * length_b]
        message = parse(layout.envelope("r@example.com", values).data)
        text_part, html_part = message.iter_parts()
        text = html.replace("SLOTA", values[0]).replace("SLOTB", values[1])
        escaped = values[0].replace("&", "&amp;")
        markup = html.replace("SLOTA", escaped).replace("SLOTB", values[1])
        for part, content in ((text_part, text), (html_part, markup)):
            expected = base64.encodebytes((content + "\r\n").encode()).decode().split()
            assert part.get_payload().split() == expected, (length_a, length_b)
