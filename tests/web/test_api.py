"""JSON API v1: categories and email subscriptions; bad input is a 400 with a sentence."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from notifier.models import Subscriber, SubscriberStatus
from tests import factories

SITE_CATEGORIES = {
    "news": "News", "economy": "Economy", "energy": "Energy", "ecology": "Ecology",
    "opinion": "Opinion", "culture": "Culture", "gender": "Gender", "interview": "Interview",
    "science": "Science", "logistics-transport": "Logistics-Transport", "history": "History",
    "defense": "Defense", "karabakh": "Karabakh", "diaspora": "Diaspora", "covid-19": "Covid-19",
}  # fmt: skip


def test_lists_the_site_categories(client):
    answer = client.get("/api/v1/categories")
    assert answer.status_code == 200
    assert {c["slug"]: c["name"] for c in answer.json} == SITE_CATEGORIES


def test_subscribing_answers_202_and_queues_one_confirmation(client, queue, session):
    answer = client.post(
        "/api/v1/subscriptions", json={"email": "Reader@Example.COM", "categories": ["news"]}
    )
    assert answer.status_code == 202
    [subscriber] = session.scalars(select(Subscriber)).all()
    assert subscriber.email == "reader@example.com"
    assert subscriber.status is SubscriberStatus.PENDING
    assert queue.confirmations == [
        (subscriber.id, [c.id for c in factories.categories(session, "news")])
    ]


def test_subscribing_again_does_not_reveal_whether_the_address_was_known(client, session, queue):
    factories.subscriber(session, "known@example.com", "news")
    session.commit()
    known = client.post(
        "/api/v1/subscriptions", json={"email": "known@example.com", "categories": ["culture"]}
    )
    unknown = client.post(
        "/api/v1/subscriptions", json={"email": "new@example.com", "categories": ["culture"]}
    )
    assert (known.status_code, known.json) == (unknown.status_code, unknown.json)
    assert len(queue.confirmations) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"email": "not-an-address", "categories": ["news"]}, "not valid"),
        ({"email": "a@example.com\r\nBcc: x@y.z", "categories": ["news"]}, "not valid"),
        ({"email": "", "categories": ["news"]}, "enter an email"),
        ({"email": 42, "categories": ["news"]}, "enter an email"),
        ({"categories": ["news"]}, "enter an email"),
        ({"email": "a@example.com", "categories": []}, "at least one category"),
        ({"email": "a@example.com", "categories": ["news", "sports"]}, "Unknown category: sports"),
        ({"email": "a@example.com", "categories": "news"}, "must be a list"),
        ({"email": "a@example.com", "categories": [1, 2]}, "must be a list"),
        ({"email": "a@example.com"}, "must be a list"),
        (["a@example.com"], "JSON object"),
    ],
)
def test_bad_input_is_a_400_with_a_sentence(client, queue, body, message):
    answer = client.post("/api/v1/subscriptions", json=body)
    assert answer.status_code == 400
    assert message in answer.json["error"]
    assert queue.confirmations == []


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("{not json", "application/json"),
        ("email=a@example.com", "application/x-www-form-urlencoded"),
        ("", "application/json"),
    ],
)
def test_non_json_is_a_400(client, data, content_type):
    answer = client.post("/api/v1/subscriptions", data=data, content_type=content_type)
    assert answer.status_code == 400 and "JSON object" in answer.json["error"]


def test_unknown_api_paths_and_methods_answer_json(client):
    missing = client.get("/api/v1/nope")
    assert missing.status_code == 404 and "error" in missing.json
    wrong = client.delete("/api/v1/categories")
    assert wrong.status_code == 405 and "error" in wrong.json


def test_oversized_body_is_refused(client):
    answer = client.post(
        "/api/v1/subscriptions", data="x" * 100_000, content_type="application/json"
    )
    assert answer.status_code == 413 and "error" in answer.json


def test_nul_characters_are_refused_with_a_sentence_not_a_database_error(client, queue):
    for body in ({"email": "a\x00@example.com", "categories": ["news"]},
                 {"email": "a@example.com", "categories": ["news\x00"]}):  # fmt: skip
        answer = client.post("/api/v1/subscriptions", json=body)
        assert answer.status_code == 400 and "NUL" in answer.json["error"]
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/manage").text).group(1)
    page = client.post("/manage", data={"email": "a\x00@example.com", "csrf_token": token})
    assert page.status_code == 400 and "NUL" in page.text
    assert queue.confirmations == []
