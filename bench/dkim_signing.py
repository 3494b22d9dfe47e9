"""What DKIM signing costs per reader's email, on the fan-out path's own messages.

    .venv/bin/python bench/dkim_signing.py [--messages 2000]

Builds one article's emails for N readers the way the fan-out does (Composer.email_envelope:
the layout rendered once, each reader's links and headers filled in), then signs each with
the service's signer (notifier/channels/dkim.py) and, for comparison, with dkimpy's own
dkim.sign (its pure-Python RSA). Prints the message size and the CPU milliseconds per message
for composing, for our signing, and for dkim.sign, on one thread. No database is needed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime

import dkim

from notifier.channels.dkim import DkimSigner, new_private_key
from notifier.config import load_settings
from notifier.delivery.addressing import Addressee
from notifier.delivery.compose import Composer
from notifier.models import Article, Category, Subscriber


def _envelopes(count: int, settings) -> list[bytes]:
    composer = Composer(settings)
    news = Category(id=1, slug="news", name="News")
    story = Article(id=7, guid="https://aze.media/?p=7", link="https://aze.media/story-7/",
                    title="Manat holds steady as oil prices climb for a third week",
                    summary="What happened, in two lines. " * 8, published_at=datetime.now(UTC),
                    categories=[news])  # fmt: skip
    readers = [Subscriber(id=i, email=f"reader{i}@example.com") for i in range(1, count + 1)]
    return [composer.email_envelope(Addressee(i, story, reader, (news,))).data
            for i, reader in enumerate(readers, 1)]  # fmt: skip


def _cpu_ms_per(messages: list[bytes], sign) -> float:
    started = time.process_time()
    for data in messages:
        sign(data)
    return (time.process_time() - started) * 1000 / len(messages)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    count = parser.parse_args().messages
    key = new_private_key()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {"NOTIFIER_DATA_DIR": data_dir, "SECRET_KEY": "bench",
               "MAIL_FROM": "News <news@aze.test>"}  # fmt: skip
        settings = load_settings({**os.environ, **env})
        started = time.process_time()
        messages = _envelopes(count, settings)
        compose_ms = (time.process_time() - started) * 1000 / count
    signer = DkimSigner("aze.test", "news1", key)
    ours = _cpu_ms_per(messages, signer.signed)
    sample = messages[: max(1, count // 10)]
    theirs = _cpu_ms_per(sample, lambda data: dkim.sign(
        data, b"news1", b"aze.test", key.encode(), include_headers=[b"from", b"to"]))  # fmt: skip
    size = sum(map(len, messages)) // count
    print(f"messages: {count}, average size {size} bytes, RSA 2048")
    print(f"compose (fan-out path):      {compose_ms:.3f} ms CPU per message")
    print(f"sign (notifier DkimSigner):  {ours:.3f} ms CPU per message")
    print(f"sign (dkimpy dkim.sign):     {theirs:.3f} ms CPU per message ({len(sample)} sampled)")


if __name__ == "__main__":
    main()
