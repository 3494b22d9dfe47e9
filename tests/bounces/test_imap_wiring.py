"""How the bounce mailbox reader runs: the beat task (thin, on its own schedule only with
IMAP_HOST) and `notifier bounces --imap-once` for operators, both against the real Dovecot."""

from __future__ import annotations

from datetime import timedelta

from click.testing import CliRunner
from sqlalchemy import select

from notifier import tasks
from notifier.celery_app import make_celery
from notifier.cli import cli
from notifier.db import session_scope
from notifier.exclusive import alone
from notifier.inbound.imap_reader import MAILBOX_LOCK
from notifier.models import BounceKind, BounceReport, TaskFailure
from tests.bounces.corpus import load
from tests.conftest import make_settings
from tests.support.dovecot import PROCESSED, append, folder_contents

VERP = "bounces+1.x@bounces.aze.test"


def _auto_reply() -> bytes:
    return load("vacation_rfc3834.eml", "ann@example.com", VERP, "<article1.d1@aze.test>")


def _mailbox_env(database_url, tmp_path, dovecot, user, password, **more) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url, "NOTIFIER_DATA_DIR": str(tmp_path / "var"),
        "SECRET_KEY": "test-secret-key", "MAIL_FROM": "Aze.Media <news@aze.test>",
        "BOUNCE_DOMAIN": "bounces.aze.test", "IMAP_HOST": "127.0.0.1",
        "IMAP_PORT": str(dovecot.imaps_port), "IMAP_USER": user, "IMAP_PASSWORD": password,
        "IMAP_CA_FILE": str(dovecot.ca_file), **more,
    }  # fmt: skip


def test_beat_reads_the_mailbox_only_when_there_is_one(tmp_path, pg_database_url, redis_url,
                                                      dovecot):  # fmt: skip
    user, password = dovecot.add_account()
    env = _mailbox_env(pg_database_url, tmp_path, dovecot, user, password,
                       CELERY_BROKER_URL=redis_url)  # fmt: skip
    without = make_celery(make_settings(tmp_path, CELERY_BROKER_URL=redis_url))
    assert "read-bounce-mailbox" not in without.conf.beat_schedule
    settings = make_settings(tmp_path, **env)
    beat = make_celery(settings).conf.beat_schedule["read-bounce-mailbox"]  # the current app
    assert beat["task"] == tasks.poll_bounce_mailbox.name
    assert beat["schedule"] == timedelta(seconds=settings.imap_poll_seconds)

    imap = dovecot.client(user, password)
    uid = append(imap, _auto_reply())
    assert tasks.poll_bounce_mailbox.apply().get() == {"taken": 1, "left": 0, "failed": 0}
    assert tasks.poll_bounce_mailbox.apply().get() == {"taken": 0, "left": 0, "failed": 0}
    assert folder_contents(imap, "INBOX") == {} and len(folder_contents(imap, PROCESSED)) == 1
    imap.logout()
    with session_scope(settings.database_url) as session:
        [report] = session.scalars(select(BounceReport)).all()
    assert (report.kind, report.source) == (BounceKind.AUTO_REPLY, "imap"), uid


def test_a_mailbox_out_of_reach_fails_the_beat_task_with_its_cause(tmp_path, pg_database_url,
                                                                   redis_url, dovecot):  # fmt: skip
    from notifier.ops.status import gather_status
    from notifier.timeutil import utcnow

    user, _ = dovecot.add_account()
    env = _mailbox_env(pg_database_url, tmp_path, dovecot, user, "wrong",
                       CELERY_BROKER_URL=redis_url)  # fmt: skip
    settings = make_settings(tmp_path, **env)
    app = make_celery(settings)
    result = tasks.poll_bounce_mailbox.apply()
    assert result.failed()
    with session_scope(settings.database_url) as session:
        [failure] = session.scalars(select(TaskFailure)).all()
        report = gather_status(session, app, settings, utcnow())
    assert failure.task_name == "notifier.tasks.read_bounce_mailbox"
    assert "MailboxError" in failure.cause and "refused" in failure.cause
    assert [g.task for g in report.task_failures_last_day] == ["read_bounce_mailbox"]


def test_an_operator_reads_the_mailbox_once_from_the_command_line(tmp_path, pg_database_url,
                                                                  dovecot):  # fmt: skip
    user, password = dovecot.add_account()
    env = _mailbox_env(pg_database_url, tmp_path, dovecot, user, password)
    imap = dovecot.client(user, password)
    uid = append(imap, _auto_reply())
    person = append(imap, load("unrelated_newsletter.eml", "a@example.com", "me@aze.test",
                               "<a@b.test>"))  # fmt: skip
    with alone(pg_database_url, MAILBOX_LOCK):  # a beat's poll is reading it right now
        busy = CliRunner().invoke(cli, ["bounces", "--imap-once"], env=env)
    assert busy.exit_code == 0, busy.output
    assert "another poll is reading the mailbox right now; nothing read." in busy.output
    assert list(folder_contents(imap, "INBOX")) == [uid, person]
    done = CliRunner().invoke(cli, ["bounces", "--imap-once"], env=env)
    assert done.exit_code == 0, done.output
    summary = f"{user}@127.0.0.1/INBOX: 1 taken (moved to {PROCESSED}), 1 left alone, 0 failed."
    assert summary in done.output
    assert f"UID {uid}: auto_reply, delivery None" in done.output
    assert list(folder_contents(imap, "INBOX")) == [person]
    imap.logout()

    wrong = CliRunner().invoke(cli, ["bounces", "--imap-once"], env={**env, "IMAP_PASSWORD": "x"})
    assert wrong.exit_code == 1 and f"IMAP login as {user} refused" in wrong.output
    unset = CliRunner().invoke(cli, ["bounces", "--imap-once"], env={**env, "IMAP_HOST": ""})
    assert unset.exit_code == 1 and "IMAP_HOST is not set" in unset.output
