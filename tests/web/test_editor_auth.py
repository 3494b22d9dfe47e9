"""Editor login and logout: one refusal message, throttling, safe redirects, hardened sessions."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import jsonify

from notifier.domain.editors import create_editor, disable_editor
from notifier.timeutil import utcnow
from notifier.web import create_app
from notifier.web.auth import editor_required
from tests.conftest import make_settings

PASSWORD = "correct horse battery"
REFUSED = "Wrong email or password."


def csrf(client, path: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def log_in(client, email: str, password: str = PASSWORD, **extra: str):
    form = {"email": email, "password": password, "csrf_token": csrf(client, "/editor/login")}
    return client.post("/editor/login", data={**form, **extra})


def error_of(answer) -> str:
    return re.search(r'<p class="error" role="alert">([^<]*)</p>', answer.text).group(1)


@pytest.fixture
def app(settings, queue):
    limits = settings.with_overrides(
        login_max_attempts_per_account=3, login_max_attempts_per_ip=6,
        login_max_attempts_per_account_new_browsers=8,
    )  # fmt: skip
    return create_app(limits, queue=queue)


@pytest.fixture
def editor(session):
    row = create_editor(session, "ed@example.com", PASSWORD, "editor")
    session.commit()
    return row


def test_pages_send_anonymous_visitors_to_the_login_form_and_back(client, editor):
    answer = client.get("/editor/?tab=1")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/editor/login?next=/editor/?tab%3D1"
    page = client.get(answer.headers["Location"]).text
    assert 'name="next" value="/editor/?tab=1"' in page and 'type="password"' in page
    answer = log_in(client, "ed@example.com", next="/editor/?tab=1")
    assert answer.status_code == 302 and answer.headers["Location"] == "/editor/?tab=1"


def test_login_leads_to_the_home_page(client, editor):
    answer = log_in(client, "ED@example.com")
    assert answer.status_code == 302 and answer.headers["Location"] == "/editor/"
    home = client.get("/editor/").text
    assert "Logged in as <strong>ed@example.com</strong> (editor)" in home
    assert 'href="/editor/alerts/new"' in home and 'href="/editor/alerts/"' in home
    assert "/editor/admin/" not in home, "admin links are for admins"
    assert client.get("/editor/login").headers["Location"] == "/editor/"


def test_wrong_password_and_unknown_address_get_the_same_answer(client, editor):
    wrong = log_in(client, "ed@example.com", "not the password")
    unknown = log_in(client, "nobody@example.com", PASSWORD)
    assert wrong.status_code == unknown.status_code == 400
    assert error_of(wrong) == error_of(unknown) == REFUSED
    assert client.get("/editor/").status_code == 302


def test_login_and_logout_need_their_csrf_token(client, editor):
    answer = client.post("/editor/login", data={"email": "ed@example.com", "password": PASSWORD})
    assert answer.status_code == 400 and "The form expired" in answer.text
    assert client.get("/editor/").status_code == 302, "not logged in"
    log_in(client, "ed@example.com")
    assert client.post("/editor/logout").status_code == 400
    assert client.get("/editor/").status_code == 200, "still logged in"
    answer = client.post("/editor/logout", data={"csrf_token": csrf(client, "/editor/")})
    assert answer.status_code == 302 and answer.headers["Location"] == "/editor/login"
    assert client.get("/editor/").status_code == 302


def test_failures_per_account_answer_429_even_for_the_right_password(client, editor):
    for _ in range(3):
        assert log_in(client, "ed@example.com", "not the password").status_code == 400
    answer = log_in(client, "ed@example.com")
    assert answer.status_code == 429
    assert error_of(answer) == "Too many attempts; try again in 15 minutes."
    assert 0 < int(answer.headers["Retry-After"]) <= 900
    assert client.get("/editor/").status_code == 302


def test_a_success_resets_the_account_counter(client, editor):
    for _ in range(2):
        log_in(client, "ed@example.com", "not the password")
    assert log_in(client, "ed@example.com").status_code == 302
    client.post("/editor/logout", data={"csrf_token": csrf(client, "/editor/")})
    for _ in range(2):
        assert log_in(client, "ed@example.com", "not the password").status_code == 400
    assert log_in(client, "ed@example.com").status_code == 302


def client_at(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_failures_per_ip_answer_429_for_every_address_from_it(app, editor):
    attacker = client_at(app, "203.0.113.9")
    for number in range(6):
        assert log_in(attacker, f"guess{number}@example.com", "password guess").status_code == 400
    assert log_in(attacker, "ed@example.com").status_code == 429
    elsewhere = client_at(app, "198.51.100.7")
    assert log_in(elsewhere, "ed@example.com").status_code == 302


def test_guesses_from_everywhere_never_lock_the_editors_own_browser_out(app, editor):
    mine = client_at(app, "198.51.100.7")
    assert log_in(mine, "ed@example.com").status_code == 302
    device = mine.get_cookie("notifier_device", path="/editor/")
    assert device.http_only and device.same_site == "Strict"
    mine.post("/editor/logout", data={"csrf_token": csrf(mine, "/editor/")})
    for number in range(8):  # a botnet: a few guesses from each of many addresses
        stranger = client_at(app, f"203.0.113.{number}")
        assert log_in(stranger, "ed@example.com", "password guess").status_code == 400
    new_browser = client_at(app, "198.51.100.7")
    assert log_in(new_browser, "ed@example.com").status_code == 429
    assert log_in(mine, "ed@example.com").status_code == 302, "a browser it knows still works"


def test_a_disabled_editor_cannot_log_in_and_their_session_ends(client, app, session, editor):
    assert log_in(client, "ed@example.com").status_code == 302
    assert client.get("/editor/").status_code == 200
    disable_editor(session, editor.id, utcnow())
    session.commit()
    assert client.get("/editor/").headers["Location"].startswith("/editor/login")
    with client.session_transaction() as cookie_session:
        assert "editor_id" not in cookie_session
    answer = log_in(app.test_client(), "ed@example.com")
    assert answer.status_code == 400 and error_of(answer) == REFUSED


def _stolen_cookie(client) -> str:
    """The session cookie as an attacker would copy it from the browser."""
    return client.get_cookie("session").value


def _with_cookie(app, value: str):
    other = app.test_client()
    other.set_cookie("session", value)
    return other


def test_a_cookie_copied_before_logout_is_dead_after_it(client, app, editor):
    assert log_in(client, "ed@example.com").status_code == 302
    copied = _stolen_cookie(client)
    elsewhere = app.test_client()
    log_in(elsewhere, "ed@example.com")  # the same editor on another device
    assert _with_cookie(app, copied).get("/editor/").status_code == 200
    client.post("/editor/logout", data={"csrf_token": csrf(client, "/editor/")})
    assert _with_cookie(app, copied).get("/editor/").status_code == 302
    assert elsewhere.get("/editor/").status_code == 302, "logout ends every session"
    assert log_in(client, "ed@example.com").status_code == 302, "logging in again works"
    assert client.get("/editor/").status_code == 200


def test_a_new_password_ends_every_session(client, app, session, editor):
    from notifier.domain.editors import set_password

    log_in(client, "ed@example.com")
    copied = _stolen_cookie(client)
    set_password(session, "ed@example.com", "a brand new passphrase")
    session.commit()
    assert client.get("/editor/").status_code == 302
    assert _with_cookie(app, copied).get("/editor/").status_code == 302


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "//evil.example/editor/",
        "https://evil.example/",
        "/\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "",
    ],
)
def test_next_never_leaves_the_site(client, editor, target):
    answer = log_in(client, "ed@example.com", next=target)
    assert answer.status_code == 302 and answer.headers["Location"] == "/editor/"


def test_login_starts_a_fresh_session(client, editor):
    with client.session_transaction() as cookie_session:
        cookie_session["planted"] = "by an attacker"
    log_in(client, "ed@example.com")
    with client.session_transaction() as cookie_session:
        assert "planted" not in cookie_session and cookie_session["editor_id"] == editor.id


def test_api_paths_answer_401_json_instead_of_redirecting(settings, queue, editor):
    app = create_app(settings, queue=queue)
    app.add_url_rule(
        "/api/v1/editor-only", "editor_only", editor_required(lambda: jsonify(ok=True))
    )
    client = app.test_client()
    answer = client.get("/api/v1/editor-only")
    assert answer.status_code == 401 and answer.json == {"error": "Log in as an editor first."}
    log_in(client, "ed@example.com")
    assert client.get("/api/v1/editor-only").json == {"ok": True}


def session_cookie(answer) -> str:
    return next(h for h in answer.headers.getlist("Set-Cookie") if h.startswith("session="))


def test_the_session_cookie_is_httponly_lax_and_expires(app, client, editor, settings):
    cookie = session_cookie(log_in(client, "ed@example.com"))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Expires=" in cookie
    assert "Secure" not in cookie, "plain http in development"
    lifetime = timedelta(seconds=settings.editor_session_seconds)
    assert app.permanent_session_lifetime == lifetime == timedelta(hours=12)


def test_the_session_cookie_is_secure_when_public_url_is_https(tmp_path, database_url, queue):
    settings = make_settings(tmp_path, PUBLIC_URL="https://n.example", DATABASE_URL=database_url)
    app = create_app(settings, queue=queue)
    client = app.test_client()
    page = client.get("/editor/login", base_url="https://n.example")
    assert page.status_code == 200
    cookie = session_cookie(page)  # holds the CSRF token
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
