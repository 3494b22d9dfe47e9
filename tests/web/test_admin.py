"""Admin pages: only admins, CSRF on every form, tokens shown once."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from notifier.domain.api_tokens import issue_token, token_for_bearer
from notifier.domain.editors import create_editor
from notifier.models import ApiToken, Editor, EditorRole
from notifier.timeutil import utcnow

PASSWORD = "correct horse battery"
TOKEN = re.compile(r"ntf_[A-Za-z0-9_-]{43}")


def csrf(client, path: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def log_in(client, email: str) -> None:
    form = {"email": email, "password": PASSWORD, "csrf_token": csrf(client, "/editor/login")}
    assert client.post("/editor/login", data=form).status_code == 302


@pytest.fixture
def admin(session) -> Editor:
    row = create_editor(session, "boss@example.com", PASSWORD, EditorRole.ADMIN)
    session.commit()
    return row


@pytest.fixture
def editor(session) -> Editor:
    row = create_editor(session, "ed@example.com", PASSWORD, EditorRole.EDITOR)
    session.commit()
    return row


@pytest.fixture
def as_admin(client, admin):
    log_in(client, admin.email)
    return client


def reload(session, row):
    session.expire_all()
    return session.get(type(row), row.id)


ROUTES = [
    ("get", "/editor/admin/editors"),
    ("post", "/editor/admin/editors"),
    ("post", "/editor/admin/editors/1/disable"),
    ("get", "/editor/admin/tokens"),
    ("post", "/editor/admin/tokens"),
    ("post", "/editor/admin/tokens/1/revoke"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_editors_get_403_on_every_admin_route(client, editor, method, path):
    log_in(client, editor.email)
    data = {"csrf_token": csrf(client, "/editor/"), "email": "x@example.com", "name": "x"}
    answer = getattr(client, method)(path, data=data if method == "post" else None)
    assert answer.status_code == 403 and "Only admins" in answer.text


@pytest.mark.parametrize("path", ["/editor/admin/editors", "/editor/admin/tokens"])
def test_anonymous_visitors_are_sent_to_log_in(client, path):
    answer = client.get(path)
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/editor/login")


def test_admins_see_the_pages_and_links_to_them(as_admin, editor):
    assert 'href="/editor/admin/editors"' in as_admin.get("/editor/").text
    page = as_admin.get("/editor/admin/editors")
    assert page.status_code == 200 and "ed@example.com" in page.text and "(you)" in page.text
    assert as_admin.get("/editor/admin/tokens").status_code == 200


def test_an_admin_adds_an_editor_who_can_then_log_in(as_admin, app, session):
    form = {"email": "new@example.com", "role": "editor", "password": "a long first password"}
    assert as_admin.post("/editor/admin/editors", data=form).status_code == 400, "no CSRF token"
    assert session.scalar(select(Editor).where(Editor.email == "new@example.com")) is None
    form["csrf_token"] = csrf(as_admin, "/editor/admin/editors")
    answer = as_admin.post("/editor/admin/editors", data=form, follow_redirects=True)
    assert answer.status_code == 200 and "Created editor new@example.com" in answer.text
    newcomer = session.scalar(select(Editor).where(Editor.email == "new@example.com"))
    assert newcomer.role is EditorRole.EDITOR
    other = app.test_client()
    login = {"email": "new@example.com", "password": "a long first password"}
    login["csrf_token"] = csrf(other, "/editor/login")
    assert other.post("/editor/login", data=login).status_code == 302


def test_a_short_initial_password_is_refused_with_the_reason(as_admin, session):
    form = {"email": "new@example.com", "role": "admin", "password": "short"}
    form["csrf_token"] = csrf(as_admin, "/editor/admin/editors")
    answer = as_admin.post("/editor/admin/editors", data=form)
    assert answer.status_code == 400 and "at least 12 characters" in answer.text
    assert 'value="new@example.com"' in answer.text
    assert session.scalar(select(Editor).where(Editor.email == "new@example.com")) is None


def test_an_admin_disables_an_editor_but_not_the_last_admin(as_admin, admin, editor, session):
    path = f"/editor/admin/editors/{editor.id}/disable"
    assert as_admin.post(path).status_code == 400, "no CSRF token"
    assert reload(session, editor).disabled_at is None
    answer = as_admin.post(path, data={"csrf_token": csrf(as_admin, "/editor/admin/editors")})
    assert answer.status_code == 302 and reload(session, editor).disabled_at is not None
    token = csrf(as_admin, "/editor/admin/editors")
    answer = as_admin.post(f"/editor/admin/editors/{admin.id}/disable", data={"csrf_token": token})
    assert answer.status_code == 400 and "your own account" in answer.text
    assert reload(session, admin).disabled_at is None  # the last admin rule: domain/test_editors


def test_no_disable_button_next_to_your_own_account(as_admin, admin, editor):
    table = as_admin.get("/editor/admin/editors").text.split('<table id="editors">')[1]
    own = table.split(admin.email)[1].split("</tr>")[0]
    other = table.split(editor.email)[1].split("</tr>")[0]
    assert "(you)" in own and "Disable" not in own
    assert f"/editor/admin/editors/{editor.id}/disable" in other and "Disable" in other


def test_a_new_token_is_shown_once_and_stored_hashed(as_admin, admin, session):
    assert as_admin.post("/editor/admin/tokens", data={"name": "CMS"}).status_code == 400
    form = {"name": "CMS", "csrf_token": csrf(as_admin, "/editor/admin/tokens")}
    answer = as_admin.post("/editor/admin/tokens", data=form)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    plaintext = TOKEN.search(answer.text).group(0)
    listing = as_admin.get("/editor/admin/tokens").text
    assert plaintext not in listing and plaintext[:12] in listing
    row = session.scalar(select(ApiToken))
    assert row.name == "CMS" and row.created_by_id == admin.id and plaintext not in row.token_hash
    assert token_for_bearer(session, f"Bearer {plaintext}", utcnow()).id == row.id


def test_an_admin_revokes_a_token(as_admin, session):
    token, plaintext = issue_token(session, "old script", None, utcnow())
    session.commit()
    path = f"/editor/admin/tokens/{token.id}/revoke"
    assert as_admin.post(path).status_code == 400, "no CSRF token"
    assert token_for_bearer(session, f"Bearer {plaintext}", utcnow()) is not None
    session.commit()
    answer = as_admin.post(
        path, data={"csrf_token": csrf(as_admin, "/editor/admin/tokens")}, follow_redirects=True
    )
    assert answer.status_code == 200 and "Revoked the token old script" in answer.text
    session.expire_all()
    assert token_for_bearer(session, f"Bearer {plaintext}", utcnow()) is None
