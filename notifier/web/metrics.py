"""GET /metrics for Prometheus: what every process recorded, and state read at scrape time.

Served only to METRICS_ALLOW_NETWORKS (the internal network by default) and, when
METRICS_TOKEN is set, only with `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, request
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from notifier.config import Settings
from notifier.metrics import RecordedCollector, StateCollector
from notifier.web.client_network import client_in

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    extensions = current_app.extensions["notifier"]
    settings: Settings = extensions["settings"]
    if (refusal := refused(settings)) is not None:
        return refusal
    registry = CollectorRegistry()
    registry.register(RecordedCollector(settings.metrics_dir))
    registry.register(StateCollector(settings, getattr(extensions["queue"], "celery", None)))
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encode(registry), content_type=content_type)


def refused(settings: Settings) -> Response | None:
    """The answer for a client that may not read metrics, or None for one that may."""
    if not from_internal_network(settings):
        return _plain(403, "Metrics are served to the internal network only.")
    if settings.metrics_token and not _bearer_matches(settings.metrics_token):
        return _plain(401, "A bearer token is required.", {"WWW-Authenticate": "Bearer"})
    return None


def from_internal_network(settings: Settings) -> bool:
    """The client is on a network of METRICS_ALLOW_NETWORKS (and no unknown proxy relays it)."""
    forwarded = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
    if forwarded and not settings.trusted_proxies:
        # Relayed by a proxy nobody told us about (TRUSTED_PROXIES): the peer address is the
        # proxy's, so a request from anywhere would look internal.
        return False
    return client_in(settings.metrics_allow_networks)


def _bearer_matches(token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def _plain(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(message + "\n", status, headers, mimetype="text/plain")
