"""The suppression list on /ops/: masked addresses, the evidence, search, reveal (logged),
removing an address from suppression and the CSV export; admins only, bad input a 4xx."""

from __future__ import annotations

import csv
import io
import logging
import re
from datetime import timedelta

import pytest

from notifier.domain.editors import create_editor
from notifier.domain.suppressions import suppress
from notifier.models import (
    BounceKind,
    BounceReport,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
)
from notifier.timeutil import utcnow
from tests import factories
from tests.web.conftest import logged_in_client
from tests.web.test_ops_dashboard import csrf

RAW = (
    "From: MAILER-DAEMON@mx.example.net\r\nTo: bounces+7.abc@bounces.aze.test\r\n"
    "Subject: Undelivered Mail\r\n\r\n<ann.lee@example.com>: 550 5.1.1 No such user\r\n"
)


@pytest.fixture
def admin_client(app, session):
    admin = create_editor(session, "admin@aze.media", "correct horse battery", "admin")
    session.commit()
    return logged_in_client(app, admin)


def _suppressed(session, email: str, reason=SuppressionReason.HARD_BOUNCES, raw=RAW, days=0):
    now = utcnow() - timedelta(days=days)
    reader = factories.subscriber(session, email, "news")
    report = BounceReport(received_at=now, source="listener", kind=BounceKind.HARD,
                          recipient=email, status="5.1.1", reason="550 5.1.1 No such user",
                          digest=f"{email:0<64}"[:64], raw=raw)  # fmt: skip
    session.add(report)
    session.flush()
    suppress(session, reader, reason, "listener", "3 hard bounces, last: 5.1.1 No such user",
             now, report_id=report.id)  # fmt: skip
    session.commit()
    return session.query(Suppression).filter_by(email=email).one(), reader


def test_only_admins_see_it(editor_client, client):
    assert editor_client.get("/ops/suppressions/").status_code == 403
    assert editor_client.get("/ops/suppressions/export.csv").status_code == 403
    assert client.get("/ops/suppressions/").status_code in (302, 303)


def test_the_list_masks_addresses_and_shows_reason_source_and_date(admin_client, session):
    _suppressed(session, "ann.lee@example.com")
    _suppressed(session, "bob@example.org", SuppressionReason.COMPLAINT)
    page = admin_client.get("/ops/suppressions/").text
    assert "ann.lee@example.com" not in page and "bob@example.org" not in page
    assert "a…@e…e.com" in page and "b…@e…e.org" in page
    assert "hard bounces" in page and "complaint" in page and "listener" in page
    assert "Suppressions</a>" in admin_client.get("/ops/").text, "the nav links to it"


def test_search_finds_by_address_and_bad_search_is_a_sentence(admin_client, session):
    _suppressed(session, "ann.lee@example.com")
    _suppressed(session, "bob@example.org")
    page = admin_client.get("/ops/suppressions/?q=ann.lee").text
    assert "a…@e…e.com" in page and "b…@e…e.org" not in page
    answer = admin_client.get("/ops/suppressions/?q=" + "x" * 201)
    assert answer.status_code == 400 and "too long" in answer.text
    answer = admin_client.get("/ops/suppressions/?lifted=maybe")
    assert answer.status_code == 400 and "must be 1" in answer.text


def test_the_report_is_shown_masked_and_revealing_is_a_logged_post(admin_client, session, caplog):
    row, _ = _suppressed(session, "ann.lee@example.com")
    page = admin_client.get(f"/ops/suppressions/{row.id}").text
    assert "No such user" in page and "ann.lee@example.com" not in page
    assert admin_client.get(f"/ops/suppressions/{row.id}/reveal").status_code == 405
    assert admin_client.post(f"/ops/suppressions/{row.id}/reveal").status_code == 400, "CSRF"
    with caplog.at_level(logging.WARNING, logger="notifier.web.ops_suppressions"):
        shown = admin_client.post(f"/ops/suppressions/{row.id}/reveal",
                                  data={"csrf_token": csrf(page)})  # fmt: skip
    assert shown.status_code == 200 and "ann.lee@example.com" in shown.text
    assert any(f"revealed the address of suppression {row.id}" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert admin_client.get("/ops/suppressions/999999").status_code == 404


def test_a_dropped_raw_report_says_so(admin_client, session):
    row, _ = _suppressed(session, "ann.lee@example.com", raw=None)
    page = admin_client.get(f"/ops/suppressions/{row.id}").text
    assert "raw message was dropped after 30 days" in page


def test_removing_from_suppression_lets_email_go_again(admin_client, session):
    row, reader = _suppressed(session, "ann.lee@example.com")
    page = admin_client.get("/ops/suppressions/").text
    token = csrf(page)
    assert admin_client.post(f"/ops/suppressions/{row.id}/lift").status_code == 400, "CSRF"
    answer = admin_client.post(f"/ops/suppressions/{row.id}/lift", data={"csrf_token": token})
    assert answer.status_code == 303
    session.expire_all()
    assert session.get(Suppression, row.id).lifted_by == "admin@aze.media"
    assert reader.status == SubscriberStatus.ACTIVE
    again = admin_client.post(f"/ops/suppressions/{row.id}/lift", data={"csrf_token": token})
    assert again.status_code == 400 and "already lifted" in again.text
    missing = admin_client.post("/ops/suppressions/999999/lift", data={"csrf_token": token})
    assert missing.status_code == 404
    assert "a…@e…e.com" not in admin_client.get("/ops/suppressions/").text
    assert "a…@e…e.com" in admin_client.get("/ops/suppressions/?lifted=1").text


@pytest.mark.parametrize("detail", ['=HYPERLINK("http://evil")', "+1", "-2", "@SUM(A1)"])
def test_the_export_has_full_addresses_and_no_formulas(admin_client, session, detail):
    row, _ = _suppressed(session, "ann.lee@example.com")
    row.detail = detail
    session.commit()
    answer = admin_client.get("/ops/suppressions/export.csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    [record] = list(csv.DictReader(io.StringIO(answer.text)))
    assert record["email"] == "ann.lee@example.com" and record["reason"] == "hard_bounces"
    assert record["detail"] == "'" + detail
    assert re.match(r"\d{4}-\d\d-\d\d", record["suppressed_at"])
