"""How SmtpChannel's connections read replies: parsed as bytes arrive, in any split, the way
smtplib reads them (its codes, its errors), and handed over a group at a time. Without a
server: the parser is fed bytes as reads would return them."""

from __future__ import annotations

import smtplib

import pytest

from notifier.channels.smtp import SmtpChannel, _Lane


@pytest.fixture
def lane() -> _Lane:
    connected = _Lane(SmtpChannel("smtp://127.0.0.1:25", timeout_seconds=5))
    connected.client = smtplib.SMTP()  # as if open: smtplib connects only when given a host
    return connected


def fed(lane: _Lane, *reads: bytes) -> _Lane:
    for data in reads:
        lane._parse(data)
    return lane


def test_a_pipelined_group_split_anywhere_is_three_replies(lane):
    fed(lane, b"250 2.1.0 Ok\r\n25", b"0 2.1.5 Ok\r", b"\n354 End data with <CR><LF>.<CR><LF>\r\n")

    assert lane.take_replies(3) == [
        (250, b"2.1.0 Ok"),
        (250, b"2.1.5 Ok"),
        (354, b"End data with <CR><LF>.<CR><LF>"),
    ]
    assert lane.take_replies(1) is None  # nothing more, and the connection is open


def test_a_group_is_handed_over_only_when_whole(lane):
    fed(lane, b"250 Ok\r\n250 Ok\r\n")
    assert lane.take_replies(3) is None
    fed(lane, b"354 go ahead\r\n")
    assert [code for code, _ in lane.take_replies(3)] == [250, 250, 354]


def test_a_reply_of_several_lines_is_one_reply_with_its_lines_joined(lane):
    fed(lane, b"250-first line\r\n250-second", b" line\r\n250 last line\r\n")

    assert lane.take_replies(1) == [(250, b"first line\nsecond line\nlast line")]


def test_a_421_is_handed_over_at_once_though_more_replies_were_asked_for(lane):
    """The server closes after a 421: the rest of the group never comes."""
    fed(lane, b"250 Ok\r\n421 4.3.2 Service shutting down\r\n")

    assert lane.take_replies(3) == [(250, b"Ok"), (421, b"4.3.2 Service shutting down")]


def test_a_line_without_a_code_is_code_minus_one_as_smtplib_has_it(lane):
    fed(lane, b"hello there\r\n")
    [(code, _)] = lane.take_replies(1)
    assert code == -1


def test_a_reply_line_longer_than_smtplib_reads_is_an_error(lane):
    fed(lane, b"250 " + b"x" * 9000)
    error = lane.take_replies(1)
    assert isinstance(error, smtplib.SMTPResponseException)
    assert (error.smtp_code, error.smtp_error) == (500, "Line too long.")


def test_a_server_that_hung_up_before_replying_is_a_lost_connection(lane):
    fed(lane, b"250 Ok\r\n")
    lane.hung_up = True

    assert lane.take_replies(1) == [(250, b"Ok")]  # what came before the hang-up still counts
    error = lane.take_replies(1)
    assert isinstance(error, smtplib.SMTPServerDisconnected)
    assert "Connection unexpectedly closed" in str(error)
