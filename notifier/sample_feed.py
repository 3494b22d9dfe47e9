"""The local sample feed a newcomer adds articles to, so the whole loop runs offline."""

from __future__ import annotations

import shutil
import uuid
from email.utils import format_datetime
from pathlib import Path
from xml.etree import ElementTree as ET

from notifier.config import PROJECT_ROOT
from notifier.timeutil import utcnow

SHIPPED_SAMPLE = PROJECT_ROOT / "samples" / "feed.xml"
NAMESPACES = {
    "content": "http://purl.org/rss/1.0/modules/content/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "atom": "http://www.w3.org/2005/Atom",
    "media": "http://search.yahoo.com/mrss/",
}
for _prefix, _uri in NAMESPACES.items():
    ET.register_namespace(_prefix, _uri)


def ensure_sample_feed(path: Path) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHIPPED_SAMPLE, path)
    return path


def add_sample_article(
    path: Path, title: str, categories: list[str], summary: str, image_url: str | None = None
) -> str:
    """Prepend a new item, as WordPress does when a post is published; returns its guid."""
    tree = ET.parse(ensure_sample_feed(path))
    channel = tree.getroot().find("channel")
    if channel is None:
        raise ValueError(f"{path} is not an RSS feed (no <channel>): delete it for a fresh one.")
    guid = f"urn:uuid:{uuid.uuid4()}"
    item = ET.Element("item")
    ET.SubElement(item, "title").text = title
    ET.SubElement(item, "link").text = f"https://aze.media/?p={uuid.uuid4().int % 10**6}"
    ET.SubElement(item, "pubDate").text = format_datetime(utcnow())
    for name in categories:
        ET.SubElement(item, "category").text = name
    ET.SubElement(item, "guid", isPermaLink="false").text = guid
    ET.SubElement(item, "description").text = summary
    if image_url:
        ET.SubElement(item, f"{{{NAMESPACES['media']}}}content", url=image_url, medium="image")
    first_item = channel.find("item")
    position = list(channel).index(first_item) if first_item is not None else len(channel)
    channel.insert(position, item)
    tree.write(path, encoding="UTF-8", xml_declaration=True)
    return guid
