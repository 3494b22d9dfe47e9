"""A batch that outlasts its lease (slow SMTP server): do two workers send the same rows?"""

from __future__ import annotations

from tests.fault.scenarios import lease_outlived

RECIPIENTS = 12


def test_a_batch_slower_than_its_lease_sends_nothing_twice(tmp_path, pg_database_url):
    figures = lease_outlived(tmp_path, pg_database_url, RECIPIENTS, per_message=0.4)
    print(figures.line())
    assert (figures.delivered, figures.lost) == (RECIPIENTS, 0)
    assert figures.duplicates == 0
