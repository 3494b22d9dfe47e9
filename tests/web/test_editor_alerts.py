"""The editor's alert flow over HTTP: compose, preview with reach, send once, watch, stop."""

from __future__ import annotations

import re

from sqlalchemy import select

from notifier.models import Alert, AlertStatus
from tests import factories


def csrf(client, path: str = "/editor/alerts/new") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def form(client, **fields) -> dict:
    data = {"title": "Ceasefire signed", "body": "Both sides agreed.", "target": "categories",
            "categories": ["defense"], "channels": ["email", "push"], "when": "now",
            "csrf_token": csrf(client)}  # fmt: skip
    return {**data, **fields}


def test_alert_pages_need_a_logged_in_editor(client):
    answer = client.get("/editor/alerts/new")
    assert answer.status_code in (302, 303) and "/editor/login" in answer.headers["Location"]
    assert client.post("/editor/alerts/", data={"title": "x"}).status_code in (302, 303, 400)


def test_preview_shows_the_reach_per_channel_and_the_rendered_messages(
    editor_client, session, push_service
):
    factories.subscriber(session, "a@example.com", "defense")
    factories.subscriber(session, "b@example.com", "defense", "news")
    factories.subscriber(session, "c@example.com", "news")
    factories.push_subscription(session, push_service.new_subscription(), "defense")
    session.commit()
    page = editor_client.post("/editor/alerts/preview", data=form(editor_client)).text
    assert '<td data-reach="email">2 readers</td>' in page
    assert '<td data-reach="push">1 browser</td>' in page
    assert "Send now to 2 readers by email and 1 browser by push" in page
    assert "Breaking: Ceasefire signed" in page and "srcdoc=" in page


def test_preview_with_bad_input_returns_the_form_with_a_sentence(editor_client):
    answer = editor_client.post("/editor/alerts/preview", data=form(editor_client, title=""))
    assert answer.status_code == 400 and "Please write a headline." in answer.text


def test_send_creates_one_alert_even_when_clicked_twice(editor_client, session, queue):
    data = form(editor_client, idempotency_key="abc123")
    first = editor_client.post("/editor/alerts/", data=data)
    second = editor_client.post("/editor/alerts/", data=data)
    assert first.status_code == second.status_code == 303
    assert first.headers["Location"] == second.headers["Location"]
    [alert] = session.scalars(select(Alert)).all()
    assert queue.alerts == [alert.id]
    page = editor_client.get(first.headers["Location"]).text
    assert "Ceasefire signed" in page and 'id="status">queued' in page


def test_send_a_test_goes_to_the_editor_only(editor_client, session, queue, editor):
    factories.subscriber(session, "reader@example.com", "defense")
    session.commit()
    answer = editor_client.post("/editor/alerts/test", data=form(editor_client))
    assert "A test went to editor@aze.media only." in answer.text
    assert queue.alert_tests == [("Ceasefire signed", editor.email)]
    assert session.scalars(select(Alert)).all() == [] and queue.alerts == []


def test_scheduled_alert_can_be_cancelled(editor_client, session, queue):
    data = form(editor_client, when="later", send_at="2099-01-01T09:00")
    location = editor_client.post("/editor/alerts/", data=data).headers["Location"]
    [alert] = session.scalars(select(Alert)).all()
    assert alert.status is AlertStatus.SCHEDULED and queue.alerts == []
    token = csrf(editor_client, location)
    editor_client.post(f"/editor/alerts/{alert.id}/cancel", data={"csrf_token": token})
    session.expire_all()
    assert session.get(Alert, alert.id).status is AlertStatus.CANCELLED
    again = editor_client.post(f"/editor/alerts/{alert.id}/stop", data={"csrf_token": token})
    assert again.status_code == 409


def test_progress_json_and_history(editor_client, session):
    factories.subscriber(session, "a@example.com", "defense")
    session.commit()
    editor_client.post("/editor/alerts/", data=form(editor_client, idempotency_key="k"))
    [alert] = session.scalars(select(Alert)).all()
    progress = editor_client.get(f"/editor/alerts/{alert.id}/progress").json
    assert progress["status"] == "queued"
    assert set(progress["progress"]) == {"email", "push"}
    history = editor_client.get("/editor/alerts/").text
    assert "Ceasefire signed" in history and "editor@aze.media" in history


def test_forms_need_their_csrf_token(editor_client, session):
    data = form(editor_client)
    del data["csrf_token"]
    assert editor_client.post("/editor/alerts/", data=data).status_code == 400
    assert session.scalars(select(Alert)).all() == []
