"""Flask application factory: one blueprint per audience."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError, CSRFProtect
from kombu.exceptions import OperationalError as BrokerUnavailable
from sqlalchemy.orm import scoped_session
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from notifier.celery_app import make_celery
from notifier.config import Settings, load_settings
from notifier.db import session_factory
from notifier.delivery.compose import Composer
from notifier.task_queue import TaskQueue
from notifier.tokens import Tokens
from notifier.web import page_helpers, rate_limits, security_headers
from notifier.web.cors import protect_api
from notifier.web.row_ids import RowIdConverter

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, queue: TaskQueue | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask(
        __name__,
        template_folder=str(settings.templates_dir),
        static_folder=str(settings.templates_dir.parent / "static"),
    )
    app.url_map.converters["int"] = RowIdConverter  # before any route is added
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SECRET_KEY_FALLBACKS=list(settings.secret_key_fallbacks),  # sessions, CSRF tokens
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        WTF_CSRF_TIME_LIMIT=None,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.extensions["notifier"] = {
        "settings": settings,
        "db": scoped_session(session_factory(settings.database_url)),
        "queue": queue or TaskQueue(make_celery(settings)),
        "tokens": Tokens(
            settings.secret_key, settings.confirm_max_age_seconds, settings.secret_key_fallbacks
        ),
        "composer": Composer(settings),
    }
    if settings.trusted_proxies:
        # Behind N reverse proxies: take the client address and scheme from their headers,
        # so login throttling sees readers, not the proxy.
        n = settings.trusted_proxies
        # Flask's documented way to add WSGI middleware; its stubs call wsgi_app a method.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=n, x_proto=n, x_host=n
        )
    csrf = CSRFProtect(app)

    from notifier.web import (
        admin,
        alerts_api,
        api,
        assets,
        bounce_webhooks,
        dev,
        digest_pages,
        editor_alerts,
        editor_auth,
        email_pages,
        health,
        metrics,
        ops,
        ops_suppressions,
        public,
        push_api,
        push_pages,
        subscription_pages,
    )

    csrf.exempt(api.bp)
    csrf.exempt(push_api.bp)
    csrf.exempt(alerts_api.bp)
    csrf.exempt(bounce_webhooks.bp)  # relays sign their calls or carry a secret in the URL
    csrf.exempt(subscription_pages.one_click_unsubscribe)
    # The signed link is the secret, as for one-click unsubscribe.
    csrf.exempt(public.confirm)
    csrf.exempt(subscription_pages.resubscribe_now)
    csrf.exempt(digest_pages.switch_now)
    protect_api(app, settings)
    for blueprint in (
        public.bp,
        subscription_pages.bp,
        email_pages.bp,
        digest_pages.bp,
        api.bp,
        push_api.bp,
        push_pages.bp,
        assets.bp,
        editor_auth.bp,
        admin.bp,
        alerts_api.bp,
        editor_alerts.bp,
        ops.bp,
        ops_suppressions.bp,
        metrics.bp,
        health.bp,
        bounce_webhooks.bp,
    ):
        app.register_blueprint(blueprint)
    if settings.dev_mode:
        app.register_blueprint(dev.bp)

    @app.teardown_appcontext
    def remove_session(_exc: BaseException | None) -> None:
        app.extensions["notifier"]["db"].remove()

    page_helpers.install(app, settings)
    _register_error_pages(app)
    security_headers.install(app, settings)
    rate_limits.install(app, settings)
    return app


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _register_error_pages(app: Flask) -> None:
    def respond(status: int, message: str):
        if _wants_json():
            return jsonify(error=message), status
        return render_template("pages/message.html", title="Sorry", message=message), status

    @app.before_request
    def refuse_nul_characters():
        """PostgreSQL cannot store NUL in text: refuse it up front with a sentence, instead
        of a database error (500) deep in a view."""
        fields = [value for source in (request.args, request.form)
                  for values in source.listvalues() for value in values]  # fmt: skip
        fields.append(request.path)
        body = b"" if request.form else request.get_data(cache=True)
        if any("\x00" in field for field in fields) or b"\x00" in body or b"\\u0000" in body:
            return respond(400, "Text may not contain NUL characters.")
        return None

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return respond(400, "The form expired. Please go back, reload the page and try again.")

    @app.errorhandler(BrokerUnavailable)
    def broker_down(error: Exception):
        log.error("task broker unavailable: %s", error)
        return respond(503, "We cannot take requests right now. Please try again in a minute.")

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if isinstance(error, RateLimitExceeded):
            return respond(429, f"Too many requests ({error.limit.limit}). Please try again later.")
        body, status = respond(error.code or 500, error.description or error.name)
        # A 405 says which methods the path takes (Allow, RFC 9110); keep such headers.
        extra = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
        return body, status, extra
