"""The OpenAPI 3.1 document of /api/v1, served at /api/v1/openapi.json.

Built from code rather than kept as a file: its lengths and ranges are the constants the
validators use (notifier.domain.limits), so the document cannot promise more than the
checks allow, and no YAML parser is needed at run time. tests/web/test_openapi.py holds it
to the Flask routes and fuzzes every operation with schemathesis against it.
"""

from __future__ import annotations

from notifier.domain import limits
from notifier.web.openapi_schemas import EXAMPLE_ENDPOINT, EXAMPLE_KEYS, Schema, schemas


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema, description: str, example: object = None) -> Schema:
    content: Schema = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {"description": description, "content": {"application/json": content}}


def _error(description: str) -> Schema:
    return _json(_ref("Error"), description)


def _errors(*codes: str) -> Schema:
    known = {
        "400": "Bad input; the error says what to correct",
        "401": "No valid API token (or webhook signature)",
        "403": "Called from a page on an origin not in CORS_ALLOWED_ORIGINS",
        "404": "Not found",
        "413": "The body is larger than 64 KiB",
        "429": "Too many requests from this client (RATE_LIMIT_* settings); see Retry-After",
        "503": "The task broker is unreachable; try again in a minute",
    }
    return {code: _error(known[code]) for code in ("403", *codes, "429")}


def _body(name: str, example: object) -> Schema:
    return {
        "required": True,
        "content": {"application/json": {"schema": _ref(name), "example": example}},
    }


_ALERT_EXAMPLE = {
    "title": "Ceasefire signed",
    "body": "Details soon.",
    "url": "https://aze.media/ceasefire/",
    "all": True,
    "channels": ["email", "push"],
}
_ARTICLE_EXAMPLE = {
    "guid": "https://aze.media/?p=4242",
    "url": "https://aze.media/ceasefire/",
    "title": "Ceasefire signed",
    "summary": "<p>Both sides.</p>",
    "categories": [{"id": 12, "slug": "news", "name": "News"}],
    "published_at": "2026-11-25T10:00:00+04:00",
}
_SUBSCRIPTION_EXAMPLE = {
    "subscription": {"endpoint": EXAMPLE_ENDPOINT, "keys": EXAMPLE_KEYS},
    "categories": ["news"],
}


def _paths() -> dict[str, Schema]:
    alert_id = {
        "name": "alert_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0, "maximum": limits.ROW_ID_MAX},
    }
    idempotency = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "A retried call with the same key makes one alert "
        "(the first 150 characters count)",
        "schema": {"type": "string"},
    }
    subscribed = _json(_ref("PushSubscribed"), "Subscribed; the categories are replaced")
    return {
        "/api/v1/categories": {
            "get": {
                "operationId": "listCategories",
                "summary": "Categories readers can choose",
                "responses": {
                    "200": _json(
                        {"type": "array", "items": _ref("Category")}, "Every category, by name"
                    ),
                    **_errors(),
                },
            }
        },
        "/api/v1/subscriptions": {
            "post": {
                "operationId": "subscribeByEmail",
                "summary": "Ask for an email subscription; a confirmation email goes out",
                "requestBody": _body(
                    "SubscriptionRequest", {"email": "reader@example.com", "categories": ["news"]}
                ),
                "responses": {
                    "202": _json(
                        _ref("Pending"),
                        "Pending confirmation (the same "
                        "answer whether or not the address was known)",
                    ),
                    **_errors("400", "413", "503"),
                },
            }
        },
        "/api/v1/push/vapid-public-key": {
            "get": {
                "operationId": "vapidPublicKey",
                "summary": "applicationServerKey for subscribe()",
                "responses": {
                    "200": _json(_ref("VapidPublicKey"), "The VAPID public key"),
                    **_errors(),
                },
            }
        },
        "/api/v1/push/subscriptions": {
            "post": {
                "operationId": "subscribeBrowser",
                "summary": "Subscribe a browser",
                "requestBody": _body("PushSubscribeRequest", _SUBSCRIPTION_EXAMPLE),
                "responses": {"201": subscribed, "200": subscribed, **_errors("400", "413")},
            },
            "delete": {
                "operationId": "unsubscribeBrowser",
                "summary": "Stop a browser's pushes",
                "requestBody": _body("EndpointRequest", {"endpoint": EXAMPLE_ENDPOINT}),
                "responses": {
                    "204": {"description": "Stopped (or was not subscribed)"},
                    **_errors("400", "413"),
                },
            },
        },
        "/api/v1/push/subscriptions/lookup": {
            "post": {
                "operationId": "lookUpBrowser",
                "summary": "This browser's subscription",
                "requestBody": _body("EndpointRequest", {"endpoint": EXAMPLE_ENDPOINT}),
                "responses": {"200": subscribed, **_errors("400", "404", "413")},
            }
        },
        "/api/v1/alerts": {
            "post": {
                "operationId": "createAlert",
                "summary": "Send (or schedule) a breaking alert",
                "security": [{"apiToken": []}],
                "parameters": [idempotency],
                "requestBody": _body("AlertRequest", _ALERT_EXAMPLE),
                "responses": {
                    "202": _json(
                        _ref("Alert"), "Accepted (or the alert this Idempotency-Key already made)"
                    ),
                    **_errors("400", "401", "413", "503"),
                },
            }
        },
        "/api/v1/alerts/{alert_id}": {
            "get": {
                "operationId": "showAlert",
                "summary": "An alert's status and counts per channel",
                "security": [{"apiToken": []}],
                "parameters": [alert_id],
                "responses": {"200": _json(_ref("Alert"), "The alert"), **_errors("401", "404")},
            }
        },
        "/api/v1/articles": {
            "post": {
                "operationId": "publishArticle",
                "summary": "The CMS announces a just-published post (the WordPress plugin)",
                "security": [{"webhookSignature": []}, {"apiToken": []}],
                "requestBody": _body("ArticleRequest", _ARTICLE_EXAMPLE),
                "responses": {
                    "202": _json(
                        _ref("ArticleAccepted"),
                        "Announced, or categories added "
                        "within CATEGORY_GRACE_SECONDS announced to their readers",
                    ),
                    "200": _json(_ref("ArticleAccepted"), "Known: already announced or seen"),
                    **_errors("400", "401", "413", "503"),
                },
            }
        },
        "/api/v1/openapi.json": {
            "get": {
                "operationId": "openApiDocument",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_errors(),
                },
            }
        },
    }


def openapi_document(public_url: str) -> Schema:
    """The whole document, with this deployment's address as its server."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "notifier API",
            "version": "1",
            "description": 'Errors are {"error": "<sentence>"}. Unknown paths answer 404, wrong '
            "methods 405 (with Allow), both as JSON. Every operation is limited per client "
            "address (429 past RATE_LIMIT_PER_CLIENT; POST /api/v1/subscriptions also per "
            "client per hour and per mailbox per day).",
        },
        "servers": [{"url": public_url.rstrip("/")}],
        "paths": _paths(),
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "apiToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (notifier create-token)",
                },
                "webhookSignature": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Notifier-Signature",
                    "description": "sha256=<hex HMAC-SHA256 of the raw body with WEBHOOK_SECRET>",
                },
            },
        },
    }
