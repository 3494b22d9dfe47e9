"""Scenario 8: one feed in FEED_URLS drips one byte every 5 s while an article is announced
through the webhook, every setting at its default. The article's pushes go out while the
slow fetch is still under way; the feed then shows as failing, with its error, in
`notifier status --json` and on /ops/. (How soon the first push comes is bench/faults.py's
to measure: tests do not assert wall-clock times.)"""

from __future__ import annotations

from tests.fault.scenarios import slow_feed

SUBSCRIPTIONS = 200


def test_a_slow_feed_holds_back_neither_a_webhook_article_nor_its_pushes(tmp_path, pg_database_url):
    figures = slow_feed(tmp_path, pg_database_url, SUBSCRIPTIONS)
    print(figures.line())
    notes = figures.notes
    assert notes["fetching_at_first_push"], "the first push did not wait for the slow feed"
    assert (figures.delivered, figures.lost, figures.duplicates) == (SUBSCRIPTIONS, 0, 0)
    assert not notes["sweeper_requeued"]
    assert notes["final"] == {"sent": SUBSCRIPTIONS}
    assert notes["feed_failing_in_status"] and notes["feed_error_on_ops"]
    assert notes["feed_error"].endswith("was not fetched in full within FEED_TIMEOUT_SECONDS (20s)")
