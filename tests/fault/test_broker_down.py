"""The broker stopped (not wiped) while a fan-out is mid-way and while an article arrives
through the webhook, then started again on its data, every setting at its default, on Redis
(an append-only file: no marker goes missing) and on RabbitMQ (a node of our own).

What the broker did not take meanwhile (the fan-out's next chunk, the webhook's fan-out) is
kept in the database with its cause and handed over as soon as the broker answers: every
reader has the article within BROKER_LOST_TARGET of that, once; nothing waits for the
sweeper; and the operator sees what happened in `notifier status`, /ops/ and /metrics."""

from __future__ import annotations

import pytest

from tests.fault.scenarios import BROKER_LOST_TARGET, broker_down

# Email readers of the fan-out: two chunks, the first of the default DELIVERY_FIRST_CHUNK_SIZE
# (50), then the rest (under the default DELIVERY_CHUNK_SIZE of 1,000).
READERS = 250
SUBSCRIPTIONS = 200  # push readers of the webhook's article
# Three pool processes, not the tests' usual two: with the fan-out and its first chunk
# running, one is free and the worker waits for more work when the broker goes (the default
# four do too). That is when a stopped Redis used to kill the whole worker (broker_return).
CONCURRENCY = 3


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_work_the_stopped_broker_refused_goes_within_seconds_of_its_return(
    tmp_path, pg_database_url, broker, recoveries_shown, unsent_shown
):
    figures = broker_down(tmp_path, pg_database_url, READERS, SUBSCRIPTIONS, broker=broker,
                          concurrency=CONCURRENCY)  # fmt: skip
    print(figures.line())
    notes = figures.notes
    second_chunk = READERS - 50  # the first chunk went; the broker refused the second
    assert notes["kept_while_down"] == {"send_deliveries": 1, "fan_out_article": 1}
    assert notes["kept_deliveries"] == second_chunk
    assert notes["sent_while_down"] < READERS, "the broker stopped mid fan-out"
    assert figures.seconds <= BROKER_LOST_TARGET  # the wait itself fails past it
    assert (figures.delivered, figures.lost, figures.duplicates) == (READERS + SUBSCRIPTIONS,
                                                                     0, 0)  # fmt: skip
    assert notes["strangers"] == 0
    assert notes["fan_out_final"] == {"sent": READERS}
    assert notes["webhook_final"] == {"sent": SUBSCRIPTIONS}
    assert not notes["sweeper_requeued"], "nothing waited for the sweeper"
    assert notes["waiting_at_end"] == 0 and notes["worker_alive"]

    recovered = recoveries_shown()
    assert recovered.counts["broker_unreachable"] == second_chunk
    assert f"{second_chunk} once the unreachable broker answered" in recovered.ops
    unsent = unsent_shown()
    assert unsent.report["kept_last_day"] == {"send_deliveries": 1, "fan_out_article": 1}
    assert unsent.report["waiting"] == 0 and "Connection refused" in unsent.report["last_cause"]
    assert unsent.status_line.startswith("Not taken by the broker (last day): 2 tasks")
    assert unsent.ops.startswith("Not taken by the broker in the last day: 2 tasks")
    assert 'notifier_unsent_tasks_last_day{task="fan_out_article"} 1.0' in unsent.metrics
    assert "notifier_unsent_tasks_waiting 0.0" in unsent.metrics
