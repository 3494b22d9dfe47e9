"""JSON API v1 for readers' subscriptions. Errors are {"error": "<sentence>"} with a 4xx."""

from __future__ import annotations

from flask import Blueprint, jsonify

from notifier.domain.categories import list_categories
from notifier.domain.subscriptions import SubscriptionError, request_subscription
from notifier.timeutil import utcnow
from notifier.web.api_input import check_api_input, json_body
from notifier.web.context import db, queue, settings, utf8_local_parts_ok
from notifier.web.openapi import openapi_document

bp = Blueprint("api", __name__, url_prefix="/api/v1")
bp.before_request(check_api_input)


def error(message: str, status: int = 400):
    return jsonify(error=message), status


@bp.get("/openapi.json")
def openapi():
    """The API contract (OpenAPI 3.1), for client generators and the fuzz tests."""
    return jsonify(openapi_document(settings().public_url))


@bp.get("/categories")
def categories():
    return jsonify([{"slug": c.slug, "name": c.name} for c in list_categories(db())])


@bp.post("/subscriptions")
def create_subscription():
    body = json_body()
    if not isinstance(body, dict):
        return error(
            'Send a JSON object like {"email": "you@example.com", "categories": ["news"]}.'
        )
    try:
        outcome = request_subscription(
            db(), body.get("email"), body.get("categories"), utcnow(),
            settings().confirm_resend_seconds, utf8_local_parts_ok(body.get("email")),
        )  # fmt: skip
    except SubscriptionError as problem:
        return error(str(problem))
    db().commit()
    if outcome is not None:
        queue().send_confirmation(outcome.subscriber_id, list(outcome.category_ids))
    # The same answer whether or not the address was known.
    return jsonify(status="pending", message="Check your inbox to confirm the subscription."), 202
