"""Pages a subscribed reader reaches from the links in our emails: preferences (categories,
a pause, unsubscribe from all), one-click unsubscribe, and resubscribe from the page that
confirmed an unsubscribe. The signed link is the key; no login, no cookie needed."""

from __future__ import annotations

from flask import Blueprint, render_template, request
from werkzeug.datastructures import MultiDict

from notifier.domain.cadence import (
    WEEKDAYS,
    email_cadences,
    set_digest_time,
    set_email_cadences,
    sync_digest_schedules,
    timezone_names,
)
from notifier.domain.categories import list_categories
from notifier.domain.email_pause import PauseError, pause_email, paused_until, resume_email
from notifier.domain.subscriptions import (
    SubscriptionError,
    resubscribe,
    unsubscribe,
    update_preferences,
)
from notifier.models import Category, Subscriber, SubscriberStatus
from notifier.timeutil import utcnow
from notifier.tokens import TokenError
from notifier.web.context import db, settings, tokens
from notifier.web.public import message_page

bp = Blueprint("subscription", __name__)
UNSUBSCRIBED = "You are unsubscribed from everything."


@bp.errorhandler(TokenError)
def bad_link(error: TokenError):
    return message_page("This link does not work", str(error), 400)


def _change(subscriber_id: int, form: MultiDict) -> str:
    """Apply one button of the preferences page; the sentence says what happened."""
    now, days = utcnow(), settings().email_pause_days
    if "pause" in form:
        pause_email(db(), subscriber_id, now, days)
        return f"Email is paused for {days} days. It starts again by itself."
    if "resume" in form:
        resume_email(db(), subscriber_id)
        return "Email is on again: the next article in your categories comes to you."
    if "digest_time" in form:
        set_digest_time(db(), subscriber_id, form.get("timezone"), form.get("digest_hour"),
                        form.get("digest_weekday"), now)  # fmt: skip
        return "Saved: your digests come at the new time."
    grid = {key.removeprefix("email-"): value for key, value in form.items()
            if key.startswith("email-")}  # fmt: skip
    if grid and "unsubscribe_all" not in form:
        subscriber = set_email_cadences(db(), subscriber_id, grid, now)
        return "Saved." if subscriber.status is SubscriberStatus.ACTIVE else UNSUBSCRIBED
    chosen = [] if "unsubscribe_all" in form else form.getlist("categories")
    subscriber = update_preferences(db(), subscriber_id, chosen, now)
    sync_digest_schedules(db(), subscriber, now)
    return "Saved." if chosen else UNSUBSCRIBED


def _asked_for(form: MultiDict) -> dict[str, str]:
    """slug -> cadence as the failed form had it, so nothing chosen is lost."""
    grid = {k.removeprefix("email-"): v for k, v in form.items() if k.startswith("email-")}
    return grid or dict.fromkeys(form.getlist("categories"), "instant")


@bp.route("/preferences/<token>", methods=["GET", "POST"])
def preferences(token: str):
    subscriber_id = tokens().read_manage_token(token)
    subscriber = db().get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.confirmed_at is None:
        raise TokenError("This link is not valid.")
    notice, status, chosen = None, 200, None
    if request.method == "POST":
        try:
            notice = _change(subscriber_id, request.form)
            db().commit()
        except (SubscriptionError, PauseError) as error:
            db().rollback()
            notice, status = str(error), 400
            chosen = _asked_for(request.form)
    by_id = {c.id: c.slug for c in list_categories(db())}
    cadences = {by_id[i]: c.value for i, c in email_cadences(db(), subscriber_id).items()
                if i in by_id and subscriber.status is SubscriberStatus.ACTIVE}  # fmt: skip
    if chosen is not None:  # what was asked for, not what was saved
        cadences = chosen
    page = render_template(
        "pages/preferences.html", subscriber=subscriber, categories=list_categories(db()),
        cadences=cadences, timezones=timezone_names(), weekdays=WEEKDAYS,
        notice=notice, failed=status != 200, paused_until=paused_until(subscriber, utcnow()),
        pause_days=settings().email_pause_days,
    )  # fmt: skip
    return page, status


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str):
    """A GET never changes anything: link scanners and previews follow GETs."""
    request_ = tokens().read_unsubscribe_token(token)
    subscriber = db().get(Subscriber, request_.subscriber_id)
    if subscriber is None:
        raise TokenError("This unsubscribe link is not valid.")
    categories = (
        db()
        .query(Category)
        .filter(Category.id.in_(request_.category_ids))
        .order_by(Category.name)
        .all()
    )
    return render_template(
        "pages/unsubscribe.html", subscriber=subscriber, categories=categories, done=False
    )


@bp.post("/unsubscribe/<token>")
def one_click_unsubscribe(token: str):
    """RFC 8058: a POST with List-Unsubscribe=One-Click unsubscribes; no cookie, login or CSRF.
    The page it answers with can undo it in one click (a signed resubscribe token)."""
    request_ = tokens().read_unsubscribe_token(token)
    everything = request.form.get("scope") == "all"
    before = db().get(Subscriber, request_.subscriber_id)
    had = {c.id for c in before.categories} if before is not None else set()
    subscriber = unsubscribe(
        db(), request_.subscriber_id, None if everything else request_.category_ids, utcnow(),
        reason="one-click unsubscribe" if not everything else "unsubscribed from everything",
    )  # fmt: skip
    db().commit()
    # What this click dropped; a repeated click dropped nothing, and offers this email's own.
    dropped = had - {c.id for c in subscriber.categories}
    dropped = dropped or (set() if everything else set(request_.category_ids))
    return render_template(
        "pages/unsubscribe.html", subscriber=subscriber, done=True,
        manage_token=tokens().manage_token(subscriber.id),
        dropped=db().query(Category).filter(Category.id.in_(dropped)).order_by(Category.name).all(),
        resubscribe_token=tokens().resubscribe_token(subscriber.id, sorted(dropped)),
    )  # fmt: skip


@bp.post("/resubscribe/<token>")
def resubscribe_now(token: str):
    """The one button on the unsubscribed page: the signed token is the secret (as for the
    unsubscribe itself), so no CSRF token and nothing to type."""
    request_ = tokens().read_resubscribe_token(token, settings().resubscribe_max_age_seconds)
    try:
        subscriber = resubscribe(db(), request_, utcnow())
    except SubscriptionError as error:
        return message_page("We could not resubscribe you", str(error), 400)
    db().commit()
    names = ", ".join(c.name for c in subscriber.categories)
    return message_page(
        "Welcome back",
        f"{subscriber.email} gets new articles in {names} again.",
        manage_token=tokens().manage_token(subscriber.id),
    )
