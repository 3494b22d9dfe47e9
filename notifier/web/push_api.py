"""JSON API v1 for browser push subscriptions (the subscribe page and the site's widget)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from notifier.channels.push_endpoints import EndpointPolicy
from notifier.domain.push_subscriptions import (
    PushSubscriptionError,
    find_push_subscription,
    parse_browser_subscription,
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
from notifier.web.api_input import check_api_input, json_body
from notifier.web.context import db, settings, urls

bp = Blueprint("push_api", __name__, url_prefix="/api/v1/push")
bp.before_request(check_api_input)


def error(message: str, status: int = 400):
    return jsonify(error=message), status


def json_object() -> dict:
    body = json_body()
    if not isinstance(body, dict):
        raise PushSubscriptionError("Send a JSON object.")
    return body


def describe(row: PushSubscription) -> dict:
    quiet = quiet_hours_of(row.quiet_start, row.quiet_end)
    return {
        "status": "subscribed",
        "categories": [{"slug": c.slug, "name": c.name} for c in row.categories],
        "manageUrl": urls().push_manage(row.id),
        "timezone": row.timezone,
        "quietHours": {"start": quiet.start, "end": quiet.end} if quiet else None,
    }


def _quiet_hours_change(body: dict) -> tuple[bool, QuietHours | None, str | None]:
    """(quiet hours given?, quiet hours, zone or None when absent), checked before anything
    is saved, so a bad value changes nothing. Absent fields keep what the browser had."""
    zone = browser_timezone(body["timezone"]) if body.get("timezone") is not None else None
    given = "quietHours" in body
    return given, parse_quiet_hours(body["quietHours"]) if given else None, zone


@bp.errorhandler(SubscriptionError)
def bad_request(problem: SubscriptionError):
    return error(str(problem))


@bp.get("/vapid-public-key")
def vapid_public_key():
    return jsonify(publicKey=settings().vapid_public_key)


@bp.post("/subscriptions")
def subscribe():
    body = json_object()
    previous = body.get("previousEndpoint")
    if previous is not None and not isinstance(previous, str):
        return error("previousEndpoint must be the endpoint (text) this subscription renews.")
    policy = EndpointPolicy(settings().push_allowed_origins)
    browser = parse_browser_subscription(body.get("subscription"), policy)
    quiet_given, quiet, zone = _quiet_hours_change(body)
    row, created = save_push_subscription(
        db(), browser, body.get("categories"), utcnow(),
        site_origin=request.headers.get("Origin"),
        user_agent=request.headers.get("User-Agent"),
    )  # fmt: skip
    if quiet_given or zone is not None:
        kept = quiet_hours_of(row.quiet_start, row.quiet_end)
        set_quiet_hours(row, quiet if quiet_given else kept, zone)
    renewed = previous and previous != browser.endpoint
    if renewed and (old := find_push_subscription(db(), previous)):
        stop_push_subscription(db(), old, "replaced by a renewed subscription", utcnow())
    db().commit()
    return jsonify(describe(row)), 201 if created else 200


@bp.post("/subscriptions/lookup")
def lookup():
    row = find_push_subscription(db(), json_object().get("endpoint"))
    if row is None or row.status != PushStatus.ACTIVE:
        return error("This browser is not subscribed.", 404)
    return jsonify(describe(row))


@bp.delete("/subscriptions")
def unsubscribe():
    row = find_push_subscription(db(), json_object().get("endpoint"))
    if row is not None:
        stop_push_subscription(db(), row, "turned off by the reader", utcnow())
        db().commit()
    return "", 204
