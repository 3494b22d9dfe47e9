"""One client cannot mail-bomb strangers, nor one stranger through '+tag' variants."""

from __future__ import annotations

import re

import pytest

from notifier.web import create_app
from tests.conftest import make_settings
from tests.web.conftest import RecordingQueue


def _app(tmp_path, database_url, **env):
    settings = make_settings(tmp_path, DATABASE_URL=database_url, **env)
    queue = RecordingQueue()
    return create_app(settings, queue=queue), queue, settings


def _subscribe(client, email: str, ip: str = "198.51.100.7"):
    return client.post("/api/v1/subscriptions", json={"email": email, "categories": ["news"]},
                       environ_base={"REMOTE_ADDR": ip})  # fmt: skip


def test_one_client_gets_a_bounded_number_of_confirmation_emails(tmp_path, database_url):
    app, queue, _ = _app(tmp_path, database_url)
    client = app.test_client()
    answers = [_subscribe(client, f"stranger{n}@example.com") for n in range(25)]
    assert [a.status_code for a in answers] == [202] * 20 + [429] * 5
    assert len(queue.confirmations) == 20
    refused = answers[-1]
    assert "Too many requests (20 per 1 hour)" in refused.json["error"]
    assert int(refused.headers["Retry-After"]) > 0
    assert _subscribe(client, "other@example.com", ip="198.51.100.8").status_code == 202


def test_one_mailbox_behind_many_tags_and_cases_is_one_counter(tmp_path, database_url):
    app, _, _ = _app(tmp_path, database_url)
    client = app.test_client()
    variants = [f"Victim+{n}@Example.com" for n in range(8)]
    codes = [_subscribe(client, v, ip=f"203.0.113.{n}").status_code for n, v in enumerate(variants)]
    assert codes == [202] * 5 + [429] * 3, "five a day, from any number of clients"
    page = client.get("/manage").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = client.post("/manage", data={"email": "victim@example.com", "csrf_token": token},
                       environ_base={"REMOTE_ADDR": "203.0.113.99"})  # fmt: skip
    assert form.status_code == 429 and "Too many requests" in form.text


def test_trusted_networks_are_not_limited(tmp_path, database_url):
    # The one setting this test changes is the one under test.
    app, queue, _ = _app(tmp_path, database_url, RATE_LIMIT_TRUSTED_NETWORKS="198.51.100.0/24")
    client = app.test_client()
    codes = {_subscribe(client, f"bench{n}@example.com").status_code for n in range(30)}
    assert codes == {202} and len(queue.confirmations) == 30


def test_web_processes_share_their_counters_through_redis(tmp_path, database_url, redis_url):
    first, _, _ = _app(tmp_path, database_url, CELERY_BROKER_URL=redis_url)
    second, _, _ = _app(tmp_path, database_url, CELERY_BROKER_URL=redis_url)
    clients = [first.test_client(), second.test_client()]
    codes = [_subscribe(clients[n % 2], f"r{n}@example.com").status_code for n in range(22)]
    assert codes.count(202) == 20 and codes[-2:] == [429, 429]


@pytest.mark.parametrize("value", ["lots", "5 per fortnight"])
def test_a_bad_limit_setting_is_a_sentence(tmp_path, value):
    from notifier.config import ConfigError

    with pytest.raises(ConfigError, match="RATE_LIMIT_PER_CLIENT must read like"):
        make_settings(tmp_path, RATE_LIMIT_PER_CLIENT=value)
