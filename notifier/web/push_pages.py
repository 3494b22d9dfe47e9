"""The page every push links to: change this browser's categories or stop its pushes."""

from __future__ import annotations

from collections.abc import Collection

from flask import Blueprint, render_template, request

from notifier.domain.categories import list_categories
from notifier.domain.push_subscriptions import (
    BrowserSubscription,
    save_push_subscription,
    stop_push_subscription,
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
    if request.method == "POST":
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
        chosen=chosen, notice=notice, failed=status != 200,
    )  # fmt: skip
    return page, status
