"""Scenario 3: the SMTP port is closed, then the server answers 421, then it recovers; one
recipient is answered 550."""

from __future__ import annotations

from tests.fault.scenarios import smtp_outage

RECIPIENTS = 300


def test_smtp_refusing_then_421_then_recovering_delivers_once(tmp_path, pg_database_url):
    figures = smtp_outage(tmp_path, pg_database_url, RECIPIENTS, refused=3.0, closing=3.0)
    print(figures.line())
    notes = figures.notes
    assert notes["sent_during_outage"] == 0
    assert notes["max_attempts"] > 1, "deliveries were retried through the outage"
    assert (figures.delivered, figures.lost, figures.duplicates) == (RECIPIENTS, 0, 0)
    assert notes["strangers"] == 0
    # 550 for the address: recorded as failed with the server's reply, never asked again.
    assert notes["bounce_status"] == "failed"
    assert "550 5.1.1" in notes["bounce_error"] and "no such mailbox" in notes["bounce_error"]
    assert notes["bounce_rcpt_attempts"] == 1
    assert notes["final"] == {"sent": RECIPIENTS, "failed": 1}
