"""Who is logged in, and the decorators that guard editor and admin views.

The session cookie holds the editor's id and session version; the row is read again on every
request, so logout, a new password or disabling the account (which raise the version) end
every session of that editor at once, copied cookies included.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

from flask import abort, g, jsonify, redirect, request, session, url_for

from notifier.domain.editors import end_sessions
from notifier.models import Editor, EditorRole
from notifier.web.context import db

SESSION_KEY = "editor_id"
VERSION_KEY = "editor_session_version"
HOME = "/editor/"

P = ParamSpec("P")
R = TypeVar("R")


def current_editor() -> Editor | None:
    """The active editor of this request's session; a disabled or deleted one is logged out."""
    if "editor" in g:
        return g.editor
    editor_id = session.get(SESSION_KEY)
    editor = db().get(Editor, editor_id) if isinstance(editor_id, int) else None
    if editor is not None and (
        editor.disabled_at is not None or session.get(VERSION_KEY) != editor.session_version
    ):
        editor = None
    if editor is None and SESSION_KEY in session:
        session.clear()
    g.editor = editor
    return editor


def signed_in_editor() -> Editor:
    """The editor of a view behind editor_required or admin_required, which let no one else in."""
    editor = current_editor()
    if editor is None:
        raise RuntimeError("signed_in_editor() is for views behind editor_required")
    return editor


def log_in(editor: Editor) -> None:
    """A fresh session (no fixation: nothing from before login survives) for this editor."""
    session.clear()
    session[SESSION_KEY] = editor.id
    session[VERSION_KEY] = editor.session_version
    session.permanent = True  # expires after EDITOR_SESSION_SECONDS without a request
    g.editor = editor


def log_out() -> None:
    """End this session and every other one of the same editor (the caller commits)."""
    editor = current_editor()
    if editor is not None:
        end_sessions(editor)
    session.clear()
    g.editor = None


def safe_next(target: str | None, default: str = HOME) -> str:
    """A same-site relative path to go to after login, or the default (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(c) < 32 or ord(c) == 127 for c in target):
        return default  # browsers read "/\evil" and "/\t/evil" as "//evil"
    parts = urlsplit(target)
    return default if parts.scheme or parts.netloc else target


def _refuse_anonymous():
    if request.path.startswith("/api/"):
        return jsonify(error="Log in as an editor first."), 401
    here = request.full_path.rstrip("?") if request.query_string else request.path
    return redirect(url_for("editor_auth.login", next=here))


def editor_required(view: Callable[P, R]) -> Callable[P, R]:
    """Pages redirect to the login form (coming back afterwards); /api/ paths answer 401."""

    @wraps(view)
    def guarded(*args: P.args, **kwargs: P.kwargs):
        if current_editor() is None:
            return _refuse_anonymous()
        return view(*args, **kwargs)

    return guarded


def admin_required(view: Callable[P, R]) -> Callable[P, R]:
    """Like editor_required, and 403 for editors who are not admins."""

    @wraps(view)
    def guarded(*args: P.args, **kwargs: P.kwargs):
        editor = current_editor()
        if editor is None:
            return _refuse_anonymous()
        if editor.role is not EditorRole.ADMIN:
            abort(403, description="Only admins may open this page.")
        return view(*args, **kwargs)

    return guarded
