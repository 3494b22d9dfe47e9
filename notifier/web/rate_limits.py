"""Limits per client address on every endpoint, and on the ones that send email also per
client per hour and per mailbox per day, so one client cannot mail-bomb 300 strangers (or
one stranger through 50 "+tag" variants of their address).

Counters live in Redis (REDIS_URL, or the broker when it is Redis), so every web process on
every host shares them; in memory, per process, without one (`notifier dev`). When Redis
cannot be reached the limits are not applied rather than answering 500. Clients in
RATE_LIMIT_TRUSTED_NETWORKS (a load balancer's health checks, a benchmark that subscribes
thousands of readers from one address) are not limited.
Relays' bounce webhooks count only the calls they refuse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from flask import Flask, Response, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from notifier.config import Settings
from notifier.web.client_network import client_in

if TYPE_CHECKING:
    from flask.typing import RouteCallable

# View functions that send an email to the address they are given.
MAILING_VIEWS = (
    "public.subscribe", "public.resend_confirmation", "public.manage", "api.create_subscription",
)  # fmt: skip
RESEND_VIEW = "public.resend_confirmation"


def mailbox_of(address: object) -> str | None:
    """'Reader+news@Example.COM' -> 'reader@example.com': one mailbox, one counter."""
    if not isinstance(address, str) or "@" not in address:
        return None
    local, _, domain = address.strip().lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def _mailbox_key() -> str:
    body = request.get_json(silent=True) if request.is_json else None
    given = body.get("email") if isinstance(body, dict) else request.form.get("email")
    return f"mailbox:{mailbox_of(given) or get_remote_address()}"


def install(app: Flask, settings: Settings) -> Limiter:
    limiter = Limiter(
        get_remote_address,  # after ProxyFix: the real client behind TRUSTED_PROXIES
        app=app,
        storage_uri=settings.redis_url or "memory://",
        key_prefix="notifier-limits",
        default_limits=[settings.rate_limit_per_client],
        strategy="moving-window",
        headers_enabled=True,
        swallow_errors=True,
    )
    limiter.request_filter(lambda: client_in(settings.rate_limit_trusted_networks))
    # Shared: the form, the manage page and the API count against the same budgets.
    per_client = limiter.shared_limit(
        settings.rate_limit_emails_per_client, scope="emails-per-client", methods=["POST"]
    )
    per_mailbox = limiter.shared_limit(
        settings.rate_limit_emails_per_mailbox, scope="emails-per-mailbox",
        key_func=_mailbox_key, methods=["POST"],
    )  # fmt: skip
    for endpoint in MAILING_VIEWS:
        # The decorators keep the view as it was (these are plain, synchronous views); mypy
        # cannot follow Flask's sync-or-async view type through them.
        limited = per_mailbox(per_client(app.view_functions[endpoint]))
        app.view_functions[endpoint] = cast("RouteCallable", limited)
    # "Send it again" has its own, smaller budget on top: a reader needs it once or twice.
    resends = limiter.limit(settings.rate_limit_resends_per_client, methods=["POST"])
    app.view_functions[RESEND_VIEW] = cast(
        "RouteCallable", resends(app.view_functions[RESEND_VIEW])
    )
    # Relays' bounce webhooks: a burst of bounces after a big send comes from a few relay
    # addresses and is what they are for, so calls the relay signed are never counted; calls
    # refused (4xx) count against the per-client limit, so a stranger cannot flood the
    # failures ops sees.
    refused_only = limiter.limit(
        settings.rate_limit_per_client, scope="refused-bounce-webhooks", deduct_when=_refused
    )
    # flask-limiter documents limiting a whole blueprint so; its type overloads name views only.
    refused_only(app.blueprints["bounce_webhooks"])  # type: ignore[call-overload]
    return limiter


def _refused(response: Response) -> bool:
    return 400 <= response.status_code < 500
