"""The page every push links to: change this browser's categories or stop its pushes."""

from __future__ import annotations

from collections.abc import Collection

from flask import Blueprint, render_template, request

from notifier.domain.cadence import timezone_names
from notifier.domain.categories import list_categories
from notifier.domain.push_subscriptions import (
    BrowserSubscription,
    save_push_subscription,
    stop_push_subscription,
)
from notifier.domain.quiet_hours import (
    QuietHours,
    browser_timezone,
    parse_quiet_hours,
    quiet_hours_of,
    set_quiet_hours,
)
from notifier.domain.subscriptions import SubscriptionError
from notifier.models import PushStatus, PushSubscription
from notifier.timeutil import utcnow
from notifier.tokens import TokenError
from notifier.web.context import db, tokens

bp = Blueprint("push_pages", __name__)


@bp.errorhandler(TokenError)
def bad_link(error: TokenError):
    return render_template("pages/message.html", title="This link does not work",
                           message=str(error)), 400  # fmt: skip


@bp.route("/push/manage/<token>", methods=["GET", "POST"])
def manage(token: str):
    row = db().get(PushSubscription, tokens().read_push_manage_token(token))
    if row is None:
        raise TokenError("This link is not valid.")
    notice, status = None, 200
    chosen: Collection[str] | None = None  # the slugs ticked on the page shown
    if request.method == "POST" and "quiet_hours" in request.form:
        notice, status = _save_quiet_hours(row)
    elif request.method == "POST":
        chosen = [] if "turn_off" in request.form else request.form.getlist("categories")
        try:
            if chosen:
                browser = BrowserSubscription(row.endpoint, row.p256dh, row.auth)
                save_push_subscription(db(), browser, chosen, utcnow())
                notice = "Saved."
            else:
                stop_push_subscription(db(), row, "turned off on the manage page", utcnow())
                notice = "Push notifications are off for this browser."
            db().commit()
        except SubscriptionError as error:
            db().rollback()
            notice, status = str(error), 400
            chosen = set(request.form.getlist("categories"))  # what was ticked, not lost
    active = row.status == PushStatus.ACTIVE
    if chosen is None:
        chosen = {c.slug for c in row.categories} if active else set()
    page = render_template(
        "pages/push_manage.html", categories=list_categories(db()), active=active,
        chosen=chosen, notice=notice, failed=status != 200, timezones=timezone_names(),
        timezone=request.form.get("timezone") or row.timezone, quiet=_quiet_form(row),
    )  # fmt: skip
    return page, status


def _form_hour(name: str) -> object:
    """A <select>'s hour as a number ("" stays "": no quiet hours chosen)."""
    value = request.form.get(name, "").strip()
    return int(value) if value.isdigit() else value


def _quiet_form(row: PushSubscription) -> dict[str, str]:
    """The start and end shown: what was posted, else what is kept ("" for none)."""
    if "quiet_hours" in request.form:
        return {k: request.form.get(k, "") for k in ("quiet_start", "quiet_end")}
    quiet = quiet_hours_of(row.quiet_start, row.quiet_end)
    return {"quiet_start": str(quiet.start) if quiet else "",
            "quiet_end": str(quiet.end) if quiet else ""}  # fmt: skip


def _save_quiet_hours(row: PushSubscription) -> tuple[str, int]:
    start, end = _form_hour("quiet_start"), _form_hour("quiet_end")
    try:
        quiet: QuietHours | None = None
        if start != "" or end != "":
            quiet = parse_quiet_hours({"start": start, "end": end})
        set_quiet_hours(row, quiet, browser_timezone(request.form.get("timezone")))
        db().commit()
    except SubscriptionError as error:
        db().rollback()
        return str(error), 400
    if quiet is None:
        return "Saved: no quiet hours.", 200
    return f"Saved: no notifications from {quiet.start:02d}:00 to {quiet.end:02d}:00.", 200
