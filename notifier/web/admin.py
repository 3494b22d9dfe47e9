"""Admin pages: editor accounts and API tokens. Every view is admin_required."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for

from notifier.domain.api_tokens import ApiTokenError, issue_token, list_tokens, revoke_token
from notifier.domain.editors import EditorError, create_editor, disable_editor, list_editors
from notifier.models import EditorRole
from notifier.timeutil import utcnow
from notifier.web.auth import admin_required, current_editor, signed_in_editor
from notifier.web.context import db

bp = Blueprint("admin", __name__, url_prefix="/editor/admin")


def _editors_page(status: int = 200, error: str | None = None, **form: str):
    page = render_template(
        "pages/editor/admin_editors.html", editors=list_editors(db()), roles=list(EditorRole),
        me=current_editor(), error=error, form=form,
    )  # fmt: skip
    return page, status


def _tokens_page(status: int = 200, error: str | None = None):
    page = render_template("pages/editor/admin_tokens.html", tokens=list_tokens(db()), error=error)
    return page, status


@bp.get("/editors")
@admin_required
def editors():
    return _editors_page()


@bp.post("/editors")
@admin_required
def add_editor():
    email, role = request.form.get("email", ""), request.form.get("role", "")
    try:
        editor = create_editor(db(), email, request.form.get("password", ""), role)
    except EditorError as error:
        db().rollback()
        return _editors_page(400, str(error), email=email, role=role)
    db().commit()
    flash(f"Created {editor.role} {editor.email}. Give them the password by a separate channel.")
    return redirect(url_for("admin.editors"))


@bp.post("/editors/<int:editor_id>/disable")
@admin_required
def disable(editor_id: int):
    if editor_id == signed_in_editor().id:  # the page offers no button for it either
        return _editors_page(400, "You cannot disable your own account; ask another admin.")
    try:
        editor = disable_editor(db(), editor_id, utcnow())
    except EditorError as error:
        db().rollback()
        return _editors_page(400, str(error))
    db().commit()
    flash(f"Disabled {editor.email}; their sessions have ended.")
    return redirect(url_for("admin.editors"))


@bp.get("/tokens")
@admin_required
def tokens():
    return _tokens_page()


@bp.post("/tokens")
@admin_required
def add_token():
    try:
        token, plaintext = issue_token(
            db(), request.form.get("name"), signed_in_editor().id, utcnow()
        )
    except ApiTokenError as error:
        db().rollback()
        return _tokens_page(400, str(error))
    db().commit()
    # Shown once, never stored: keep the page out of caches and history.
    page = render_template("pages/editor/token_created.html", token=token, plaintext=plaintext)
    return page, 200, {"Cache-Control": "no-store"}


@bp.post("/tokens/<int:token_id>/revoke")
@admin_required
def revoke(token_id: int):
    try:
        token = revoke_token(db(), token_id, utcnow())
    except ApiTokenError as error:
        db().rollback()
        return _tokens_page(400, str(error))
    db().commit()
    flash(f"Revoked the token {token.name} ({token.prefix}…).")
    return redirect(url_for("admin.tokens"))
