"""Scenario 6: the workers' PostgreSQL goes away for 3 s during a fan-out (a proxy of ours
between them and the server is stopped and started again).

The cut is made at the worst moment, deterministically: while each worker process has a
message on the wire, which the SMTP server accepts while the database is away.
"""

from __future__ import annotations

import pytest

from tests.fault.harness import Figures
from tests.fault.scenarios import database_outage

RECIPIENTS = 300
CONCURRENCY = 2


@pytest.fixture(scope="module")
def run(tmp_path_factory, module_database) -> Figures:
    figures = database_outage(
        tmp_path_factory.mktemp("db"), module_database, RECIPIENTS, outage=3.0,
        in_flight=True, concurrency=CONCURRENCY,
    )  # fmt: skip
    print(figures.line())
    return figures


def test_database_outage_mid_fan_out_loses_nothing(run):
    assert 0 < run.notes["sent_before_cut"] < RECIPIENTS, "the cut landed mid fan-out"
    assert run.notes["workers_saw_outage"], "tasks met the outage and were retried"
    assert (run.delivered, run.lost, run.notes["strangers"]) == (RECIPIENTS, 0, 0)
    assert run.notes["final"] == {"sent": RECIPIENTS}
    # What goes twice is bounded like a crash: one message per worker process at most.
    assert run.duplicates <= CONCURRENCY


def test_database_outage_mid_fan_out_doubles_nothing(run):
    assert run.duplicates == 0
