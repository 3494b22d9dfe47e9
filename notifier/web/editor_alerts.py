"""Editors' pages for breaking alerts: compose, preview, confirm, watch it go out, history."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select

from notifier.delivery.routes import AUDIENCES
from notifier.domain.alerts import (
    AlertDraft,
    AlertError,
    alert_progress,
    audience_size,
    cancel_alert,
    create_alert,
    finish_if_done,
    stop_alert,
    validate_alert,
)
from notifier.domain.categories import list_categories
from notifier.domain.push_reach import PushReach, alert_push_reach
from notifier.models import Alert
from notifier.ops.deliverability import Thresholds, alert_rates
from notifier.task_queue import send_or_keep
from notifier.timeutil import utcnow
from notifier.web.auth import editor_required, signed_in_editor
from notifier.web.context import composer, db, queue, settings
from notifier.web.security_headers import allow_inline_styles
from notifier.wording import plural

bp = Blueprint("editor_alerts", __name__, url_prefix="/editor/alerts")


def _form_data() -> dict:
    """The compose form as the validator takes it; send_at is in the site's time zone."""
    form = request.form
    send_at = form.get("send_at", "").strip()
    if form.get("when") == "later":
        if not send_at:  # never silently "now": the editor chose a time and forgot to fill it
            raise AlertError("Choose the date and time to send at, or choose Now.", "send_at")
        try:
            local = datetime.fromisoformat(send_at)
        except ValueError:
            raise AlertError("The time to send is not a date and time.", "send_at") from None
        send_at = local.replace(tzinfo=ZoneInfo(settings().site_timezone)).isoformat()
    else:
        send_at = ""
    return {
        "title": form.get("title", ""), "body": form.get("body", ""), "url": form.get("url", ""),
        "image_url": form.get("image_url", ""), "all": form.get("target") == "all",
        "categories": form.getlist("categories"), "channels": form.getlist("channels"),
        "send_at": send_at, "override_quiet_hours": bool(form.get("override_quiet_hours")),
    }  # fmt: skip


def _compose_page(error: AlertError | None = None, status: int = 200):
    """The form; an error is shown next to its field (or above the form if it has none)."""
    form = request.form
    page = render_template(
        "pages/editor/alert_compose.html", categories=list_categories(db()), form=form,
        chosen=set(form.getlist("categories")), channels=set(form.getlist("channels") or
        ["email", "push"]), error=str(error) if error else None,
        error_field=error.field if error else None, site_url=settings().site_url,
        timezone=settings().site_timezone,
    )  # fmt: skip
    return page, status


def _draft() -> AlertDraft:
    return validate_alert(db(), _form_data(), settings().site_url, utcnow())


def _preview_page(draft: AlertDraft, notice: str | None = None):
    allow_inline_styles()  # the email preview, in a sandboxed iframe
    editor = signed_in_editor()
    alert = _unsaved_alert(draft)
    email = composer().alert_preview(alert, editor.email, list(draft.category_names))
    push = composer().alert_push(alert, None).payload
    sizes = audience_size(db(), draft, AUDIENCES)
    return render_template(
        "pages/editor/alert_preview.html", draft=draft, form=request.form, email=email,
        push=push, sizes=sizes, notice=notice, send_label=_send_label(draft, sizes),
        idempotency_key=request.form.get("idempotency_key") or uuid.uuid4().hex,
        push_reach=_push_reach(draft), daily_cap=settings().push_daily_cap,
    )  # fmt: skip


def _push_reach(draft: AlertDraft) -> PushReach | None:
    """Quiet hours and the daily cap as the push would meet them when it goes."""
    if "push" not in draft.channels:
        return None
    return alert_push_reach(
        db(), AUDIENCES["push"], draft.target_all, draft.category_slugs,
        draft.override_quiet_hours, draft.send_at or utcnow(),
        timedelta(hours=settings().quiet_hours_stale_hours), settings().push_daily_cap,
    )  # fmt: skip


def _send_label(draft: AlertDraft, sizes: dict[str, int]) -> str:
    """The confirmation repeats how many it reaches: "Send now to 1,204 readers by email…"."""
    units = {"email": ("reader", "by email"), "push": ("browser", "by push")}
    reach = " and ".join(f"{plural(sizes[c], units[c][0])} {units[c][1]}" for c in draft.channels)
    return f"{'Schedule for' if draft.send_at else 'Send now to'} {reach}"


def _unsaved_alert(draft: AlertDraft) -> Alert:
    return Alert(id=0, title=draft.title, body=draft.body, url=draft.url,
                 image_url=draft.image_url, created_at=utcnow())  # fmt: skip


@bp.get("/")
@editor_required
def history():
    alerts = db().scalars(select(Alert).order_by(Alert.created_at.desc()).limit(200)).all()
    rows = [(alert, alert_progress(db(), alert.id)) for alert in alerts]
    return render_template("pages/editor/alert_history.html", rows=rows)


@bp.route("/new", methods=["GET", "POST"])
@editor_required
def compose():
    """GET: a blank form; POST (the preview's Edit button): the draft back in the form."""
    return _compose_page()


@bp.post("/preview")
@editor_required
def preview():
    try:
        return _preview_page(_draft())
    except AlertError as error:
        return _compose_page(error, 400)


@bp.post("/test")
@editor_required
def send_test():
    """Only to the editor's own address, never to readers."""
    try:
        draft = _draft()
    except AlertError as error:
        return _compose_page(error, 400)
    alert = _unsaved_alert(draft)
    fields = {"title": alert.title, "body": alert.body, "url": alert.url,
              "image_url": alert.image_url}  # fmt: skip
    queue().send_alert_test(fields, signed_in_editor().email, list(draft.category_names))
    return _preview_page(draft, notice=f"A test went to {signed_in_editor().email} only.")


@bp.post("/")
@editor_required
def send():
    try:
        draft = _draft()
    except AlertError as error:
        return _compose_page(error, 400)
    key = request.form.get("idempotency_key", "").strip()[:100]
    alert, created = create_alert(
        db(), draft, utcnow(), created_by_id=signed_in_editor().id,
        idempotency_key=f"form:{key}" if key else None,
    )  # fmt: skip
    db().commit()
    if created and alert.send_at is None:
        send_or_keep(db(), queue().fan_out_alert, alert.id)
    return redirect(url_for("editor_alerts.show", alert_id=alert.id), 303)


@bp.get("/<int:alert_id>")
@editor_required
def show(alert_id: int):
    alert = db().get(Alert, alert_id)
    if alert is None:
        return render_template("pages/message.html", title="No such alert", message=""), 404
    limits = Thresholds.of(settings())
    return render_template(
        "pages/editor/alert_show.html", alert=alert, progress=alert_progress(db(), alert.id),
        email=alert_rates(db(), alert.id, limits), limits=limits,
    )  # fmt: skip


@bp.get("/<int:alert_id>/progress")
@editor_required
def progress(alert_id: int):
    alert = db().get(Alert, alert_id)
    if alert is None:
        return jsonify(error="No such alert."), 404
    if finish_if_done(db(), alert_id, utcnow()):
        db().commit()
    return jsonify(
        status=alert.status.value,
        progress=alert_progress(db(), alert_id),
        seconds=(alert.finished_at - alert.started_at).total_seconds()
        if alert.finished_at and alert.started_at
        else None,
    )


@bp.post("/<int:alert_id>/cancel")
@editor_required
def cancel(alert_id: int):
    return _change(alert_id, cancel_alert)


@bp.post("/<int:alert_id>/stop")
@editor_required
def stop(alert_id: int):
    return _change(alert_id, stop_alert)


def _change(alert_id: int, action):
    try:
        action(db(), alert_id, utcnow())
        db().commit()
    except AlertError as error:
        db().rollback()
        return render_template("pages/message.html", title="Not possible", message=str(error)), 409
    return redirect(url_for("editor_alerts.show", alert_id=alert_id), 303)
