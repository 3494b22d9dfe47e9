"""Editors log in and out here; /editor/ is their home page.

The client address used for throttling is request.remote_addr. Behind a reverse proxy that
is the proxy, so every editor would share one per-IP limit: wrap the app in werkzeug's
ProxyFix with the number of trusted proxies. X-Forwarded-For is never read here, since
anyone can send it.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import Blueprint, redirect, render_template, request, url_for
from flask.blueprints import BlueprintSetupState

from notifier.domain.editors import LoginRefused, LoginThrottled, authenticate, login_address
from notifier.models import EditorRole
from notifier.timeutil import utcnow
from notifier.web.auth import (
    current_editor,
    editor_required,
    log_in,
    log_out,
    safe_next,
    signed_in_editor,
)
from notifier.web.context import db, settings, tokens

bp = Blueprint("editor_auth", __name__, url_prefix="/editor")


@bp.record_once
def _session_lifetime(state: BlueprintSetupState) -> None:
    """Editor sessions end after EDITOR_SESSION_SECONDS without a request (checked by Flask)."""
    seconds = state.app.extensions["notifier"]["settings"].editor_session_seconds
    state.app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(seconds=seconds)


def _login_page(status: int = 200, error: str | None = None, email: str = ""):
    page = render_template(
        "pages/editor/login.html", error=error, email=email,
        next=safe_next(request.values.get("next")),
    )  # fmt: skip
    return page, status


@bp.get("/login")
def login():
    if current_editor() is not None:
        return redirect(safe_next(request.args.get("next")))
    return _login_page()


DEVICE_COOKIE = "notifier_device"


def _known_device(email: str) -> str | None:
    """This browser's id if it logged in to this address before (a signed cookie)."""
    token = request.cookies.get(DEVICE_COOKIE)
    if not token:
        return None
    max_age = settings().login_device_days * 86400
    return tokens().read_device_token(token, login_address(email), max_age)


def _remember_device(response, editor_email: str, device: str | None):
    """Other people's wrong guesses never lock this browser out of this account."""
    token = tokens().device_token(editor_email, device or secrets.token_urlsafe(16))
    response.set_cookie(
        DEVICE_COOKIE, token, max_age=settings().login_device_days * 86400, path="/editor/",
        httponly=True, samesite="Strict", secure=settings().public_url.startswith("https://"),
    )  # fmt: skip
    return response


@bp.post("/login")
def login_submit():
    email = request.form.get("email", "")
    device = _known_device(email)
    try:
        editor = authenticate(
            db(), email, request.form.get("password", ""), request.remote_addr or "unknown",
            utcnow(), settings(), device,
        )  # fmt: skip
    except LoginThrottled as throttled:
        page, status = _login_page(429, str(throttled), email)
        return page, status, {"Retry-After": str(throttled.retry_after_seconds)}
    except LoginRefused as refused:
        db().commit()  # keep the failure for throttling
        return _login_page(400, str(refused), email)
    db().commit()
    log_in(editor)
    return _remember_device(redirect(safe_next(request.form.get("next"))), editor.email, device)


@bp.post("/logout")
def logout():
    log_out()
    db().commit()
    return redirect(url_for("editor_auth.login"))


@bp.get("/")
@editor_required
def home():
    editor = signed_in_editor()
    return render_template(
        "pages/editor/home.html", editor=editor, is_admin=editor.role is EditorRole.ADMIN
    )
