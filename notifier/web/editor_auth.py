"""Editors log in and out here; /editor/ is their home page.

The client address used for throttling is request.remote_addr. Behind a reverse proxy that
is the proxy, so every editor would share one per-IP limit: wrap the app in werkzeug's
ProxyFix with the number of trusted proxies. X-Forwarded-For is never read here, since
anyone can send it.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, redirect, render_template, request, url_for
from flask.blueprints import BlueprintSetupState

from notifier.domain.editors import LoginRefused, LoginThrottled, authenticate
from notifier.models import EditorRole
from notifier.timeutil import utcnow
from notifier.web.auth import current_editor, editor_required, log_in, log_out, safe_next
from notifier.web.context import db, settings

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


@bp.post("/login")
def login_submit():
    email = request.form.get("email", "")
    try:
        editor = authenticate(
            db(), email, request.form.get("password", ""), request.remote_addr or "unknown",
            utcnow(), settings(),
        )  # fmt: skip
    except LoginThrottled as throttled:
        page, status = _login_page(429, str(throttled), email)
        return page, status, {"Retry-After": str(throttled.retry_after_seconds)}
    except LoginRefused as refused:
        db().commit()  # keep the failure for throttling
        return _login_page(400, str(refused), email)
    db().commit()
    log_in(editor)
    return redirect(safe_next(request.form.get("next")))


@bp.post("/logout")
def logout():
    log_out()
    db().commit()
    return redirect(url_for("editor_auth.login"))


@bp.get("/")
@editor_required
def home():
    editor = current_editor()
    return render_template(
        "pages/editor/home.html", editor=editor, is_admin=editor.role is EditorRole.ADMIN
    )
