"""The bounce mailbox read over real IMAP (a private Dovecot): the corpus appended to the
mailbox, one poll, and what happened to each message there and in the database."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from notifier.db import session_factory
from notifier.delivery.compose import Composer
from notifier.delivery.dispatch import send_deliveries
from notifier.delivery.outlets import outlets
from notifier.exclusive import alone
from notifier.inbound.imap_reader import MAILBOX_LOCK, read_bounce_mailbox
from notifier.inbound.mailbox import MailboxError
from notifier.models import BounceKind, BounceReport, Subscriber, SubscriberStatus, TaskFailure
from tests import factories
from tests.bounces.corpus import CORPUS, load
from tests.support.dovecot import PROCESSED, append, folder_contents, running_dovecot
from tests.support.queue import article_fanned_out

on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
FLAGS_OF_A_PERSON = r"(\Flagged $Label1)"  # set on unrelated mail: must survive the poll


def _send_article(session, settings, title):
    story = factories.article(session, "news", title=title)
    session.commit()
    ids = article_fanned_out(session, settings, story.id)[1]
    send_deliveries(session, ids, outlets(settings, Composer(settings)), settings)


@on_postgresql
def test_every_shape_in_the_corpus_read_from_the_mailbox(session, smtp, mailbox_settings,
                                                          dovecot):  # fmt: skip
    """Each report goes to the processor and is classified as over the listener; ours move
    to the processed folder, and mail a person wrote stays in INBOX exactly as it was."""
    appended: dict[str, tuple[int, bytes, int]] = {}  # name -> (uid, raw, reader id)
    imap = dovecot.client(mailbox_settings.imap_user, mailbox_settings.imap_password)
    for number, name in enumerate(sorted(CORPUS)):
        reader = factories.subscriber(session, f"reader{number}@example.com", "news")
        for other in session.scalars(select(Subscriber).where(Subscriber.id != reader.id)):
            other.categories = []  # each shape is about one reader's one email
        _send_article(session, mailbox_settings, name)
        [sent] = smtp.handler.received[-1:]
        raw = load(name, reader.email, sent.mail_from, sent.message["Message-ID"])
        unrelated = CORPUS[name].kind == BounceKind.UNRELATED
        appended[name] = (append(imap, raw, FLAGS_OF_A_PERSON if unrelated else None), raw,
                          reader.id)  # fmt: skip
    before = folder_contents(imap, "INBOX")

    poll = read_bounce_mailbox(mailbox_settings, session_factory(mailbox_settings.database_url))

    session.expire_all()
    reports = {r.raw.encode(): r for r in session.scalars(select(BounceReport))}
    inbox, processed = folder_contents(imap, "INBOX"), folder_contents(imap, PROCESSED)
    imap.logout()
    for name, (uid, raw, reader_id) in appended.items():
        expected = CORPUS[name]
        reader = session.get(Subscriber, reader_id)
        # Only a complaint stops a reader's email at once; one bounce or an auto-reply never.
        complained = expected.kind == BounceKind.COMPLAINT
        wanted = SubscriberStatus.COMPLAINED if complained else SubscriberStatus.ACTIVE
        assert reader.status == wanted, name
        if expected.kind == BounceKind.UNRELATED:
            assert poll.left[uid] == "not ours" and raw not in reports, name
            assert inbox[uid] == before[uid], f"{name} changed in INBOX"
            assert "\\Seen" not in inbox[uid][0] and "\\Flagged" in inbox[uid][0]
            continue
        report = reports[raw]
        assert (report.kind, report.status) == (expected.kind, expected.status), name
        assert report.source == "imap" and report.subscriber_id == reader_id, name
        assert poll.taken[uid].report_id == report.id and uid not in inbox, name
    assert sorted(body for _, body in processed.values()) == sorted(
        raw for name, (_, raw, _) in appended.items() if CORPUS[name].kind != BounceKind.UNRELATED
    )
    assert poll.failed == {} and poll.moved_by == "move"
    assert all("\\Seen" not in flags for flags, _ in processed.values())


def _dsn(to="ann@example.com", verp="bounces+1.x@bounces.aze.test",
         message_id="<article1.d1@aze.test>") -> bytes:  # fmt: skip
    return load("postfix_user_unknown.eml", to, verp, message_id)


def _auto_reply() -> bytes:
    return load("vacation_rfc3834.eml", "ann@example.com", "bounces+1.x@bounces.aze.test",
                "<article1.d1@aze.test>")  # fmt: skip


def test_mail_of_someone_else_in_a_shared_mailbox_is_left_alone(mailbox_settings, dovecot):
    """A DSN about a person's own mail, an auto-reply to them and a newsletter: none is
    addressed to BOUNCE_DOMAIN or names our delivery, so nothing is kept or moved."""
    imap = dovecot.client(mailbox_settings.imap_user, mailbox_settings.imap_password)
    theirs = [
        _dsn(verp="office@aze.test", message_id="<CAF=x1@mail.gmail.com>"),
        load("vacation_rfc3834.eml", "ann@example.com", "office@aze.test", "<a@b.test>"),
        load("unrelated_newsletter.eml", "ann@example.com", "office@aze.test", "<a@b.test>"),
    ]
    uids = [append(imap, raw, "(\\Answered)") for raw in theirs]
    before = folder_contents(imap, "INBOX")

    poll = read_bounce_mailbox(mailbox_settings, session_factory(mailbox_settings.database_url))

    assert folder_contents(imap, "INBOX") == before and folder_contents(imap, PROCESSED) == {}
    imap.logout()
    assert poll.left == dict.fromkeys(uids, "not ours") and poll.taken == {}
    with session_factory(mailbox_settings.database_url)() as session:
        assert session.scalars(select(BounceReport)).all() == []


@pytest.mark.parametrize(
    ("capability", "moved_by"),
    [("IMAP4rev1 UIDPLUS", "expunged"), ("IMAP4rev1", "flagged")],
    ids=["uidplus-without-move", "neither"],
)
def test_without_move_only_our_messages_are_copied_and_removed(settings, capability, moved_by):
    """COPY, \\Deleted and UID EXPUNGE of our UIDs only: a message someone else had flagged
    \\Deleted (waiting for their own expunge) is still there afterwards. With no UIDPLUS
    either, ours are flagged and left for the mailbox owner's expunge."""
    with running_dovecot(capability) as server:
        user, password = server.add_account()
        mailbox_settings = settings.with_overrides(
            bounce_domain="bounces.aze.test", imap_host="127.0.0.1", imap_port=server.imap_port,
            imap_security="plain", imap_user=user, imap_password=password,
        )  # fmt: skip
        imap = server.client(user, password)
        theirs = append(imap, load("unrelated_newsletter.eml", "a@example.com", "me@aze.test",
                                    "<a@b.test>"), "(\\Deleted)")  # fmt: skip
        ours = append(imap, _auto_reply())
        poll = read_bounce_mailbox(mailbox_settings,
                                   session_factory(mailbox_settings.database_url))  # fmt: skip
        inbox = folder_contents(imap, "INBOX")
        processed = folder_contents(imap, PROCESSED)
        imap.logout()
    assert poll.moved_by == moved_by and list(poll.taken) == [ours]
    assert "\\Deleted" in inbox[theirs][0]
    assert [body for _, body in processed.values()] == [_auto_reply()]
    if moved_by == "expunged":
        assert ours not in inbox
    else:
        assert "\\Deleted" in inbox[ours][0]


def _broken_sessions():
    """Stands in for a processor bug: anything but a database outage."""
    raise RuntimeError("the processor failed")


def test_a_message_that_fails_processing_stays_and_is_recorded(mailbox_settings, dovecot):
    from notifier.celery_app import make_celery
    from notifier.ops.status import gather_status
    from notifier.timeutil import utcnow
    from notifier.web import create_app
    from tests.support.ops_views import admin_client
    from tests.test_metrics import in_process

    before = in_process("notifier_bounce_reports_unprocessed_total", source="imap",
                        cause="error")  # fmt: skip
    imap = dovecot.client(mailbox_settings.imap_user, mailbox_settings.imap_password)
    uid = append(imap, _dsn())
    poll = read_bounce_mailbox(mailbox_settings, _broken_sessions)
    inbox = folder_contents(imap, "INBOX")
    imap.logout()

    assert list(poll.failed) == [uid] and "RuntimeError" in poll.failed[uid]
    assert inbox[uid][0] == frozenset(), "still there, not even \\Seen"
    with session_factory(mailbox_settings.database_url)() as session:
        [failure] = session.scalars(select(TaskFailure)).all()
        report = gather_status(session, make_celery(mailbox_settings), mailbox_settings,
                               utcnow())  # fmt: skip
    assert failure.task_name == "notifier.bounces.imap" and "RuntimeError" in failure.cause
    assert [g.task for g in report.task_failures_last_day] == ["imap"]
    assert in_process("notifier_bounce_reports_unprocessed_total", source="imap",
                      cause="error") == before + 1  # fmt: skip
    metrics = create_app(mailbox_settings).test_client().get("/metrics").text
    assert 'notifier_task_failures_recent{task="imap"} 1.0' in metrics
    ops = admin_client(mailbox_settings).get("/ops/").text
    row = re.search(r'<table class="ops" id="task-failures">.*?</table>', ops, re.S).group(0)
    assert "<td>imap</td>" in row and "RuntimeError: the processor failed" in row

    # Once processing works again, the next poll takes it.
    poll = read_bounce_mailbox(mailbox_settings, session_factory(mailbox_settings.database_url))
    assert list(poll.taken) == [uid] and poll.failed == {}


@on_postgresql
def test_with_the_database_away_the_poll_stops_and_leaves_everything(mailbox_settings, dovecot,
                                                                     pg_url):  # fmt: skip
    """Every message would fail the same way: the first failure is recorded (cause
    database, written once the database answers: here the task failures' own connection
    works) and the rest are not even tried."""
    away = session_factory(pg_url.rsplit("@", 1)[0] + "@127.0.0.1:1/test")
    imap = dovecot.client(mailbox_settings.imap_user, mailbox_settings.imap_password)
    uids = [append(imap, _dsn()), append(imap, _auto_reply())]
    poll = read_bounce_mailbox(mailbox_settings, away)
    assert list(folder_contents(imap, "INBOX")) == uids
    imap.logout()
    assert list(poll.failed) == uids[:1] and poll.failed[uids[0]].startswith("database")
    assert poll.taken == {} and poll.left == {}
    with session_factory(mailbox_settings.database_url)() as session:
        [failure] = session.scalars(select(TaskFailure)).all()
    assert failure.task_name == "notifier.bounces.imap"
    assert failure.cause.startswith("OperationalError")


def test_a_message_over_bounce_max_bytes_is_left_alone_unread(mailbox_settings, dovecot):
    """BOUNCE_MAX_BYTES at its smallest (10,000), so a test message can be over it."""
    mailbox_settings = mailbox_settings.with_overrides(bounce_max_bytes=10_000)
    imap = dovecot.client(mailbox_settings.imap_user, mailbox_settings.imap_password)
    big = append(imap, _auto_reply() + b"x" * 10_000)
    small = append(imap, _auto_reply())
    poll = read_bounce_mailbox(mailbox_settings, session_factory(mailbox_settings.database_url))
    assert list(folder_contents(imap, "INBOX")) == [big]
    imap.logout()
    assert list(poll.taken) == [small] and "larger than BOUNCE_MAX_BYTES" in poll.left[big]


def test_a_replayed_report_is_moved_without_acting_twice(mailbox_settings, dovecot):
    """Processed, but the move did not happen (the connection dropped): the next poll
    recognises the report and only moves it."""
    imap = dovecot.client(mailbox_settings.imap_user, mailbox_settings.imap_password)
    first = append(imap, _auto_reply())
    read_bounce_mailbox(mailbox_settings, session_factory(mailbox_settings.database_url))
    again = append(imap, _auto_reply())
    poll = read_bounce_mailbox(mailbox_settings, session_factory(mailbox_settings.database_url))
    assert folder_contents(imap, "INBOX") == {} and len(folder_contents(imap, PROCESSED)) == 2
    imap.logout()
    assert poll.taken[again].replay and first not in poll.taken
    with session_factory(mailbox_settings.database_url)() as session:
        assert len(session.scalars(select(BounceReport)).all()) == 1


def test_a_poll_takes_at_most_a_batch_and_the_next_poll_the_rest(mailbox_settings, dovecot):
    mailbox_settings = mailbox_settings.with_overrides(imap_batch_size=2)
    imap = dovecot.client(mailbox_settings.imap_user, mailbox_settings.imap_password)
    person = append(imap, load("unrelated_newsletter.eml", "a@example.com", "me@aze.test",
                                "<a@b.test>"))  # fmt: skip
    ours = [append(imap, _auto_reply() + f"\r\n{n}".encode()) for n in range(3)]
    sessions = session_factory(mailbox_settings.database_url)
    first, second = (read_bounce_mailbox(mailbox_settings, sessions) for _ in range(2))
    assert list(folder_contents(imap, "INBOX")) == [person]
    imap.logout()
    assert list(first.taken) == ours[:2] and list(second.taken) == ours[2:]


@on_postgresql
def test_a_poll_while_another_reads_leaves_the_mailbox_to_it(mailbox_settings, dovecot):
    imap = dovecot.client(mailbox_settings.imap_user, mailbox_settings.imap_password)
    ours = [append(imap, _auto_reply() + f"\r\n{n}".encode()) for n in range(2)]
    sessions = session_factory(mailbox_settings.database_url)
    with alone(mailbox_settings.database_url, MAILBOX_LOCK) as held:  # the other poll
        assert held
        busy = read_bounce_mailbox(mailbox_settings, sessions)
        untouched = list(folder_contents(imap, "INBOX"))
    after = read_bounce_mailbox(mailbox_settings, sessions)
    assert folder_contents(imap, "INBOX") == {}
    imap.logout()
    assert busy.busy and (busy.taken, busy.left, busy.failed) == ({}, {}, {})
    assert untouched == ours
    assert list(after.taken) == ours and not after.busy
    with sessions() as session:
        assert session.scalars(select(TaskFailure)).all() == []


@on_postgresql
def test_two_polls_at_once_take_each_message_once_and_record_no_failure(mailbox_settings,
                                                                        dovecot):  # fmt: skip
    """Two beats, or beat and `notifier bounces --imap-once`, at the same moment: without
    one poll at a time both processed the same reports, and the second's insert failed on
    the first's (a failure recorded for nothing)."""
    imap = dovecot.client(mailbox_settings.imap_user, mailbox_settings.imap_password)
    sessions = session_factory(mailbox_settings.database_url)
    start = threading.Barrier(2)

    def poll(_):
        start.wait()
        return read_bounce_mailbox(mailbox_settings, sessions)

    ours: list[int] = []
    polls: list = []
    for round_ in range(5):  # until the two really overlap
        ours += [append(imap, _auto_reply() + f"\r\n{round_}.{n}".encode()) for n in range(4)]
        with ThreadPoolExecutor(2) as pool:
            polls += pool.map(poll, range(2))
        if any(getattr(p, "busy", False) for p in polls):
            break
    assert folder_contents(imap, "INBOX") == {}
    imap.logout()
    assert any(p.busy for p in polls)
    taken = [uid for p in polls for uid in p.taken]
    assert sorted(taken) == ours  # each message read and moved by one poll only
    assert all(p.failed == {} for p in polls)
    with sessions() as session:
        assert session.scalars(select(TaskFailure)).all() == []


@pytest.mark.parametrize("security", ["starttls", "plain"])
def test_starttls_and_plain_connections(mailbox_settings, dovecot, security):
    settings = mailbox_settings.with_overrides(imap_security=security,
                                               imap_port=dovecot.imap_port)  # fmt: skip
    imap = dovecot.client(settings.imap_user, settings.imap_password)
    uid = append(imap, _auto_reply())
    imap.logout()
    assert list(read_bounce_mailbox(settings, session_factory(settings.database_url)).taken) == [
        uid
    ]


def test_a_wrong_password_or_an_untrusted_certificate_is_a_clear_error(mailbox_settings):
    sessions = session_factory(mailbox_settings.database_url)
    wrong = mailbox_settings.with_overrides(imap_password="not-it")
    with pytest.raises(MailboxError, match=r"login .* refused"):
        read_bounce_mailbox(wrong, sessions)
    untrusted = mailbox_settings.with_overrides(imap_ca_file="")  # the system's CAs only
    with pytest.raises(MailboxError, match="CERTIFICATE_VERIFY_FAILED"):
        read_bounce_mailbox(untrusted, sessions)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"IMAP_HOST": "imap.example.com"}, "set IMAP_USER and IMAP_PASSWORD"),
        ({"IMAP_SECURITY": "tls"}, "IMAP_SECURITY must be one of ssl, starttls, plain"),
        ({"IMAP_PROCESSED_FOLDER": "INBOX"}, "must differ from IMAP_FOLDER"),
        ({"IMAP_FOLDER": "Bounces/Rückläufer"}, "IMAP_FOLDER must be a folder name"),
        ({"IMAP_PORT": "99999"}, "IMAP_PORT must be a port number"),
    ],
)
def test_bad_mailbox_settings_are_refused_with_a_sentence(tmp_path, env, problem):
    from notifier.config import ConfigError
    from tests.conftest import make_settings

    with pytest.raises(ConfigError, match=re.escape(problem)):
        make_settings(tmp_path, **env)


def test_the_port_follows_the_security_unless_set(tmp_path):
    from tests.conftest import make_settings

    assert make_settings(tmp_path).imap_port == 993
    assert make_settings(tmp_path, IMAP_SECURITY="starttls").imap_port == 143
    assert make_settings(tmp_path, IMAP_SECURITY="plain", IMAP_PORT="1143").imap_port == 1143
