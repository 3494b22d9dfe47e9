"""Every shape in the corpus is read as what it is, from its machine-readable parts."""

from __future__ import annotations

import pytest

from notifier.domain.bounce_reports import read_report
from notifier.models import BounceKind
from tests.bounces.corpus import CORPUS, load

READER = "ann.reader@example.com"
VERP = "bounces+1z.abcdefghijklmnop@bounces.aze.test"
MESSAGE_ID = "<article7.d71@aze.test>"


def test_the_corpus_covers_every_sender_the_issue_names():
    senders = {expected.sender for expected in CORPUS.values()}
    assert {"Postfix", "Exim", "Gmail", "Microsoft", "Yahoo", "Amazon SES"} <= senders
    kinds = {expected.kind for expected in CORPUS.values()}
    assert kinds == set(BounceKind)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_returned_message_is_read_as_what_it_is(name):
    expected = CORPUS[name]
    read = read_report(load(name, READER, VERP, MESSAGE_ID))
    assert (read.kind, read.status) == (expected.kind, expected.status)
    if expected.kind in (BounceKind.HARD, BounceKind.SOFT, BounceKind.COMPLAINT):
        assert read.recipient == READER
        assert read.original is not None
        assert str(read.original["Message-ID"]).strip() == MESSAGE_ID
        assert read.reason


def test_a_hard_bounce_keeps_the_servers_own_words():
    read = read_report(load("gmail_user_unknown.eml", READER, VERP, MESSAGE_ID))
    assert "The email account that you tried to reach does not exist" in read.reason
    assert "\n" not in read.reason


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe\x00garbage",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x",
        b"Content-Type: multipart/report; report-type=feedback-report\r\n\r\nno parts",
        b"Subject: Undelivered Mail Returned to Sender\r\nFrom: MAILER-DAEMON@x\r\n\r\nno code",
    ],
)
def test_malformed_input_is_unrelated_or_a_report_without_a_reader_never_an_error(raw):
    read = read_report(raw)
    assert read.kind in (BounceKind.UNRELATED, BounceKind.COMPLAINT, BounceKind.SOFT)
    assert read.recipient is None
