"""Build WordPress-style RSS documents for tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from xml.sax.saxutils import escape


@dataclass
class Item:
    guid: str
    title: str
    published: datetime | None
    categories: list[str] = field(default_factory=lambda: ["News"])
    link: str | None = None
    description: str = "A summary."
    content: str | None = None
    image: str | None = None


def rss(*items: Item) -> bytes:
    parts = []
    for item in items:
        cats = "".join(f"<category><![CDATA[{c}]]></category>" for c in item.categories)
        date = f"<pubDate>{format_datetime(item.published)}</pubDate>" if item.published else ""
        content = (
            f"<content:encoded><![CDATA[{item.content}]]></content:encoded>" if item.content else ""
        )
        media = f'<media:content url="{escape(item.image)}" medium="image"/>' if item.image else ""
        parts.append(
            f"<item><title>{escape(item.title)}</title>"
            f"<link>{escape(item.link or 'https://aze.media/' + item.guid.split('=')[-1])}</link>"
            f'{date}{cats}<guid isPermaLink="false">{escape(item.guid)}</guid>'
            f"<description><![CDATA[{item.description}]]></description>{content}{media}</item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:media="http://search.yahoo.com/mrss/"><channel><title>Aze.Media</title>'
        "<link>https://aze.media</link><description>News</description>"
        + "".join(parts)
        + "</channel></rss>"
    ).encode()
