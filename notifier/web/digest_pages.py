"""Pages a digest links to: its web version ("view in browser") and the one-click switch to
instant emails or to the other digest. The signed, expiring link is the key; no login.

A GET never changes anything (mail scanners open every link): the switch link opens a page
whose one button, a POST to the same URL, makes the change.
"""

from __future__ import annotations

from flask import Blueprint, render_template

from notifier.delivery.digest_content import digest_context, load_digests
from notifier.domain.cadence_switch import DigestGone, plan_switch, switch_cadence
from notifier.domain.subscriptions import SubscriptionError
from notifier.timeutil import utcnow
from notifier.tokens import CadenceSwitch, TokenError, TokenExpired
from notifier.web.context import db, settings, tokens, urls
from notifier.web.public import message_page

bp = Blueprint("digest_pages", __name__)
GONE = "This digest is no longer kept. The news it listed is on the site."


@bp.errorhandler(TokenError)
def bad_link(error: TokenError):
    status = 410 if isinstance(error, TokenExpired) else 404
    return message_page("This link does not work", str(error), status)


@bp.errorhandler(DigestGone)
def digest_gone(_error: DigestGone):
    return message_page("This digest is no longer here", GONE, 410)


@bp.errorhandler(SubscriptionError)
def cannot_switch(error: SubscriptionError):
    return message_page("Nothing changed", str(error), 409)


@bp.get("/digest/<token>")
def web_version(token: str):
    digest_id = tokens().read_digest_view_token(token, _max_age(), utcnow())
    notice = load_digests(db(), [digest_id]).get(digest_id)
    if notice is None or not notice.groups:
        raise DigestGone(digest_id)
    context = digest_context(notice, settings())
    response = render_template("pages/digest.html", due_at=notice.due_at, **context)
    return response, 200, {"X-Robots-Tag": "noindex"}


@bp.get("/digest/switch/<token>")
def switch_page(token: str):
    switch = _switch(token)
    plan = plan_switch(db(), switch.subscriber_id, switch.digest_id, switch.cadence)
    return render_template("pages/digest_switch.html", plan=plan, done=False)


@bp.post("/digest/switch/<token>")
def switch_now(token: str):
    switch = _switch(token)
    plan = switch_cadence(db(), switch.subscriber_id, switch.digest_id, switch.cadence, utcnow())
    db().commit()
    manage_url = urls().manage(switch.subscriber_id)
    return render_template("pages/digest_switch.html", plan=plan, done=True,
                           manage_url=manage_url)  # fmt: skip


def _switch(token: str) -> CadenceSwitch:
    return tokens().read_cadence_switch_token(token, _max_age(), utcnow())


def _max_age() -> int:
    return settings().digest_link_max_age_seconds
