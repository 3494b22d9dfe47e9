"""Scenario 4: the push service answers 429 with Retry-After, then 500s, then recovers; one
subscription is answered 410. Run once per module, checked by the tests below."""

from __future__ import annotations

import pytest

from tests.fault.harness import Figures
from tests.fault.scenarios import push_throttled

SUBSCRIPTIONS = 200
RETRY_AFTER = 2


@pytest.fixture(scope="module")
def run(tmp_path_factory, module_database) -> Figures:
    figures = push_throttled(
        tmp_path_factory.mktemp("push"), module_database, SUBSCRIPTIONS, RETRY_AFTER
    )
    print(figures.line())
    return figures


def test_throttled_then_failing_push_service_gets_everything_once(run):
    notes = run.notes
    assert notes["throttled_answers"] == 3 and notes["error_answers"] == 40
    assert (run.delivered, run.lost, run.duplicates) == (SUBSCRIPTIONS, 0, 0)
    assert notes["final"] == {"sent": SUBSCRIPTIONS, "failed": 1}
    # A subscription answered 429 is not asked again before Retry-After.
    assert notes["retried_before_retry_after"] == 0


def test_gone_subscription_is_marked_gone_and_never_pushed_again(run):
    notes = run.notes
    assert notes["gone_status"] == "gone"
    status, error = notes["gone_delivery"]
    assert status == "failed" and error.startswith("gone: HTTP 410")
    assert notes["gone_received"] == 0
    assert notes["gone_requests_total"] == notes["gone_requests_first"], "asked again later"
    assert (notes["second_delivered"], notes["second_duplicates"]) == (SUBSCRIPTIONS, 0)
    assert notes["second_final"] == {"sent": SUBSCRIPTIONS}


def test_no_one_posts_to_a_push_service_before_its_retry_after(run):
    assert run.notes["origin_requests_during_backoff"] == 0
