"""Text we do not control (request lines, feed HTML, what servers answer) goes through our
regular expressions in linear time: 1 MB of the worst input for each finishes in well under
a few seconds (the quadratic versions took minutes to hours on these inputs)."""

from __future__ import annotations

import time

import pytest

from notifier.domain.feeds import parse_feed, plain_text
from notifier.logs import redact
from notifier.ops.failures import cause_of
from notifier.ops.task_failures import describe

MB = 1_000_000
GENEROUS_SECONDS = 5.0  # linear code takes ~0.1 s here; quadratic code takes > 100 s

ADVERSARIAL = {
    "word characters": "a" * MB,
    "at signs": "a@" * (MB // 2),
    "dotted labels": "a@b." * (MB // 4),
    "percent signs": "a%40" * (MB // 4),
    "urls": "http://" * (MB // 7),
    "a url": "http://" + "a" * MB,
    "requests errors": "HTTPConnectionPool(host='x'" * (MB // 27),
    "tag starts": "<p" * (MB // 2),
    "image tags": "<img " * (MB // 5),
    "spaced tags": "< / " * (MB // 4),
    "digits": "1" * MB,
    "endpoints": "https://x/" * (MB // 10),
}


def _bounded(function, text, limit: float = GENEROUS_SECONDS) -> None:
    """CPU seconds of this thread, not the wall clock: other test processes sharing the
    cores must not make linear code look quadratic."""
    started = time.thread_time()
    function(text)
    seconds = time.thread_time() - started
    assert seconds < limit, f"{function!r} took {seconds:.1f} CPU seconds on 1 MB"


@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
@pytest.mark.parametrize(
    "function",
    [redact, plain_text, cause_of, lambda text: describe(ValueError(text))],
    ids=["log redaction", "feed text", "causes", "task failures"],
)
def test_text_handling_is_linear(function, text):
    _bounded(function, text)


def test_a_hostile_feed_item_is_read_in_linear_time():
    """feedparser's own sanitising costs ~6 µs a byte (linear); ours used to cost 116 s for
    600 KB of this item, so the bound is wide."""
    text = "<p" * (MB // 4) + "<img " * (MB // 10)
    item = (
        "<item><title>T</title><link>https://aze.media/t/</link><guid>g</guid>"
        f"<content:encoded><![CDATA[{text}]]></content:encoded></item>"
    )
    document = (
        '<?xml version="1.0"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel><title>x</title>'
        f"{item}</channel></rss>"
    ).encode()
    _bounded(lambda body: parse_feed(body, "https://aze.media/feed/"), document, limit=30)
