"""Pages for readers who are not subscribed yet: subscribe (and have the link mailed again),
confirm, ask for a manage link. Plain forms: they work without JavaScript."""

from __future__ import annotations

from flask import Blueprint, render_template, request

from notifier.domain.categories import list_categories
from notifier.domain.subscriptions import (
    ConfirmationToSend,
    ManageLinkToSend,
    SubscriptionError,
    confirm_subscription,
    confirmable_subscriber,
    request_manage_link,
    request_subscription,
)
from notifier.models import Category
from notifier.timeutil import utcnow
from notifier.tokens import TokenError
from notifier.web.context import db, queue, settings, tokens, utf8_local_parts_ok
from notifier.wording import plural

bp = Blueprint("public", __name__)


def message_page(title: str, message: str, status: int = 200, **extra):
    return render_template("pages/message.html", title=title, message=message, **extra), status


def enqueue(outcome: ConfirmationToSend | ManageLinkToSend | None) -> None:
    if isinstance(outcome, ConfirmationToSend):
        queue().send_confirmation(outcome.subscriber_id, list(outcome.category_ids))
    elif isinstance(outcome, ManageLinkToSend):
        queue().send_manage_link(outcome.subscriber_id)


@bp.errorhandler(TokenError)
def bad_link(error: TokenError):
    return message_page("This link does not work", str(error), 400)


def _subscribe_page(email: str = "", chosen: list[str] | None = None, error: str | None = None):
    return render_template(
        "pages/subscribe.html", categories=list_categories(db()), chosen=set(chosen or ()),
        email=email, error=error,
    )  # fmt: skip


@bp.get("/")
def subscribe_form():
    return _subscribe_page()


def _ask_for_confirmation(email: str, chosen: list[str], timezone: str | None = None) -> None:
    """Record the wish and mail the link (unless one went to the address moments ago)."""
    outcome = request_subscription(
        db(), email, chosen, utcnow(), settings().confirm_resend_seconds,
        utf8_local_parts_ok(email), timezone=timezone,
    )  # fmt: skip
    db().commit()
    enqueue(outcome)


@bp.post("/subscribe")
def subscribe():
    email, chosen = request.form.get("email", ""), request.form.getlist("categories")
    try:
        _ask_for_confirmation(email, chosen, request.form.get("timezone"))
    except SubscriptionError as error:
        return _subscribe_page(email, chosen, str(error)), 400
    return render_template("pages/check_inbox.html", email=email, chosen=chosen, resent=None)


@bp.post("/subscribe/resend")
def resend_confirmation():
    """The "send it again" button of the check-your-inbox page. It answers the same whether
    the address is known and whether a link went out just now (at most one per
    CONFIRM_RESEND_SECONDS), so it tells nobody anything about an address."""
    email, chosen = request.form.get("email", ""), request.form.getlist("categories")
    try:
        _ask_for_confirmation(email, chosen, request.form.get("timezone"))
    except SubscriptionError as error:
        return _subscribe_page(email, chosen, str(error)), 400
    return render_template("pages/check_inbox.html", email=email, chosen=chosen,
                           resent=_resent(settings().confirm_resend_seconds))  # fmt: skip


def _resent(wait_seconds: int) -> str:
    """What a resend did, said the same way whatever happened (see resend_confirmation)."""
    if wait_seconds <= 0:
        return "A new link is on its way."
    wait = (
        plural(wait_seconds // 60, "minute")
        if wait_seconds >= 60
        else plural(wait_seconds, "second")
    )
    return f"If no link went to this address in the last {wait}, a new one is on its way."


@bp.get("/confirm/<token>")
def confirm_page(token: str):
    """A GET only shows the button: mail scanners open every link in a message."""
    request_ = tokens().read_confirm_token(token)
    subscriber = confirmable_subscriber(db(), request_)
    categories = (
        db()
        .query(Category)
        .filter(Category.id.in_(request_.category_ids))
        .order_by(Category.name)
        .all()
    )
    return render_template("pages/confirm.html", subscriber=subscriber, categories=categories)


@bp.post("/confirm/<token>")
def confirm(token: str):
    subscriber = confirm_subscription(db(), tokens().read_confirm_token(token), utcnow())
    db().commit()
    names = ", ".join(c.name for c in subscriber.categories)
    return message_page(
        "You are subscribed",
        f"{subscriber.email} will get new articles in: {names}.",
        manage_token=tokens().manage_token(subscriber.id),
    )


@bp.route("/manage", methods=["GET", "POST"])
def manage():
    if request.method == "GET":
        return render_template("pages/manage.html")
    email = request.form.get("email", "")
    try:
        outcome = request_manage_link(db(), email, utcnow(), settings().confirm_resend_seconds)
    except SubscriptionError as error:
        return render_template("pages/manage.html", error=str(error), email=email), 400
    db().commit()
    enqueue(outcome)
    return message_page(
        "Check your inbox",
        "If that address is subscribed, we have emailed it a link to manage the subscription.",
    )
