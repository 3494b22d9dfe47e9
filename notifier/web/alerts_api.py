"""JSON API for scripts and the CMS: breaking alerts and the instant-publish webhook.

Alerts need a Bearer API token (created by an admin). The webhook takes the same token, or
an HMAC-SHA256 signature of the raw body with WEBHOOK_SECRET in X-Notifier-Signature.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, jsonify, request

from notifier.domain.alerts import AlertError, alert_progress, create_alert, validate_alert
from notifier.domain.api_tokens import token_for_bearer
from notifier.domain.feeds import FeedParseError
from notifier.domain.limits import IDEMPOTENCY_KEY_MAX
from notifier.domain.webhook_articles import parse_webhook_article, publish_webhook_article
from notifier.models import Alert
from notifier.task_queue import send_or_keep
from notifier.timeutil import utcnow
from notifier.web.api_input import check_api_input, json_body
from notifier.web.context import db, queue, settings

bp = Blueprint("alerts_api", __name__, url_prefix="/api/v1")
bp.before_request(check_api_input)
SIGNATURE_HEADER = "X-Notifier-Signature"


def error(message: str, status: int = 400):
    return jsonify(error=message), status


def _token():
    token = token_for_bearer(db(), request.headers.get("Authorization"), utcnow())
    if token is not None:
        db().commit()  # last_used_at
    return token


def _signed() -> bool:
    secret = settings().webhook_secret
    given = request.headers.get(SIGNATURE_HEADER, "")
    if not secret or not given.startswith("sha256=") or not given.isascii():
        return False  # compare_digest refuses non-ASCII text: a 401, not a 500
    expected = hmac.new(secret.encode(), request.get_data(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(given.removeprefix("sha256="), expected)


def describe(alert: Alert) -> dict:
    return {
        "id": alert.id,
        "status": alert.status.value,
        "title": alert.title,
        "channels": [c for c, on in (("email", alert.send_email), ("push", alert.send_push)) if on],
        "override_quiet_hours": alert.override_quiet_hours,
        "send_at": alert.send_at.isoformat() if alert.send_at else None,
        "started_at": alert.started_at.isoformat() if alert.started_at else None,
        "finished_at": alert.finished_at.isoformat() if alert.finished_at else None,
        "progress": alert_progress(db(), alert.id),
    }


@bp.post("/alerts")
def create():
    token = _token()
    if token is None:
        return error("Send a valid API token: Authorization: Bearer <token>.", 401)
    body = json_body()
    if not isinstance(body, dict):
        return error("Send a JSON object with title, body, url, categories or all, channels.")
    try:
        draft = validate_alert(db(), body, settings().site_url, utcnow())
    except AlertError as problem:
        return error(str(problem))
    key = request.headers.get("Idempotency-Key", "").strip()[:IDEMPOTENCY_KEY_MAX]
    alert, created = create_alert(
        db(), draft, utcnow(), api_token_id=token.id,
        idempotency_key=f"token-{token.id}:{key}" if key else None,
    )  # fmt: skip
    db().commit()
    if created and alert.send_at is None:
        send_or_keep(db(), queue().fan_out_alert, alert.id)
    return jsonify(describe(alert)), 202


@bp.get("/alerts/<int:alert_id>")
def show(alert_id: int):
    if _token() is None:
        return error("Send a valid API token: Authorization: Bearer <token>.", 401)
    alert = db().get(Alert, alert_id)
    if alert is None:
        return error("No such alert.", 404)
    return jsonify(describe(alert))


@bp.post("/articles")
def publish_article():
    if not _signed() and _token() is None:
        return error(f"Sign the body ({SIGNATURE_HEADER}: sha256=<hex>) or send an API token.", 401)
    try:
        stored = publish_webhook_article(
            db(), parse_webhook_article(json_body()), utcnow(),
            settings().category_grace_seconds, settings().webhook_max_new_categories,
        )  # fmt: skip
    except FeedParseError as problem:
        return error(str(problem))
    db().commit()
    if stored.to_fan_out:
        send_or_keep(db(), queue().fan_out_article, stored.id)
    if stored.new:
        return jsonify(id=stored.id, status="announced"), 202
    if stored.widened:
        return jsonify(id=stored.id, status="categories added: announced to their readers"), 202
    return jsonify(id=stored.id, status="known: already announced or seen in the feed"), 200
