"""Pages for readers: subscribe, confirm, manage, one-click unsubscribe. Work without JS."""

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
    unsubscribe,
    update_preferences,
)
from notifier.models import Category, Subscriber
from notifier.timeutil import utcnow
from notifier.tokens import TokenError
from notifier.web.context import db, queue, settings, tokens, utf8_local_parts_ok

bp = Blueprint("public", __name__)

CHECK_INBOX = (
    "Check your inbox: we sent a link to confirm. Nothing is sent to you until you click it."
)


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


@bp.get("/")
def subscribe_form():
    return render_template("pages/subscribe.html", categories=list_categories(db()), chosen=set())


@bp.post("/subscribe")
def subscribe():
    email, chosen = request.form.get("email", ""), request.form.getlist("categories")
    try:
        outcome = request_subscription(
            db(), email, chosen, utcnow(), settings().confirm_resend_seconds,
            utf8_local_parts_ok(email),
        )  # fmt: skip
    except SubscriptionError as error:
        page = render_template(
            "pages/subscribe.html", categories=list_categories(db()), chosen=set(chosen),
            email=email, error=str(error),
        )  # fmt: skip
        return page, 400
    db().commit()
    enqueue(outcome)
    return message_page("Almost done", CHECK_INBOX)


@bp.get("/confirm/<token>")
def confirm_page(token: str):
    """A GET only shows the button: mail scanners open every link in a message."""
    request_ = tokens().read_confirm_token(token)
    subscriber = confirmable_subscriber(db(), request_)
    categories = db().query(Category).filter(Category.id.in_(request_.category_ids)).all()
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
    try:
        outcome = request_manage_link(
            db(), request.form.get("email", ""), utcnow(), settings().confirm_resend_seconds
        )
    except SubscriptionError as error:
        return render_template("pages/manage.html", error=str(error)), 400
    db().commit()
    enqueue(outcome)
    return message_page(
        "Check your inbox",
        "If that address is subscribed, we have emailed it a link to manage the subscription.",
    )


@bp.route("/preferences/<token>", methods=["GET", "POST"])
def preferences(token: str):
    subscriber_id = tokens().read_manage_token(token)
    subscriber = db().get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.confirmed_at is None:
        raise TokenError("This link is not valid.")
    notice, status = None, 200
    if request.method == "POST":
        chosen = [] if "unsubscribe_all" in request.form else request.form.getlist("categories")
        try:
            update_preferences(db(), subscriber_id, chosen, utcnow())
            db().commit()
            notice = "Saved." if chosen else "You are unsubscribed from everything."
        except SubscriptionError as error:
            db().rollback()
            notice, status = str(error), 400
    page = render_template(
        "pages/preferences.html", subscriber=subscriber, categories=list_categories(db()),
        chosen={c.slug for c in subscriber.categories}, notice=notice,
    )  # fmt: skip
    return page, status


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str):
    """A GET never changes anything: link scanners and previews follow GETs."""
    request_ = tokens().read_unsubscribe_token(token)
    subscriber = db().get(Subscriber, request_.subscriber_id)
    if subscriber is None:
        raise TokenError("This unsubscribe link is not valid.")
    categories = db().query(Category).filter(Category.id.in_(request_.category_ids)).all()
    return render_template(
        "pages/unsubscribe.html", subscriber=subscriber, categories=categories, done=False
    )


@bp.post("/unsubscribe/<token>")
def one_click_unsubscribe(token: str):
    """RFC 8058: a POST with List-Unsubscribe=One-Click unsubscribes; no cookie, login or CSRF."""
    request_ = tokens().read_unsubscribe_token(token)
    everything = request.form.get("scope") == "all"
    subscriber = unsubscribe(
        db(), request_.subscriber_id, None if everything else request_.category_ids, utcnow(),
        reason="one-click unsubscribe" if not everything else "unsubscribed from everything",
    )  # fmt: skip
    db().commit()
    return render_template(
        "pages/unsubscribe.html", subscriber=subscriber, done=True,
        manage_token=tokens().manage_token(subscriber.id),
    )  # fmt: skip
