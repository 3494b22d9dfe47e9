"""The request and response bodies of /api/v1, as JSON Schema for the OpenAPI document.

Optional fields take null (and "" for text) as "not given", because the views do; every
other type is refused with a 400, as the document says (schemathesis checks both ways).
"""

from __future__ import annotations

from typing import Any

from notifier.domain import limits
from notifier.domain.alerts import CHANNELS
from notifier.models import AlertStatus

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


_TEXT_URL = {"type": "string", "minLength": 1, "maxLength": limits.URL_MAX}
_SLUGS = {"type": "array", "items": {"type": "string"}, "maxItems": limits.CATEGORY_SLUGS_MAX}
_STAMP = {"type": ["string", "null"], "format": "date-time"}
# Optional text: absent, null and "" all mean "not given".
_TEXT = {"type": ["string", "null"]}
_OPTIONAL_DATE_TIME = {**_TEXT, "anyOf": [{"format": "date-time"}, {"maxLength": 0}]}
_HOUR = {"type": "integer", "minimum": 0, "maximum": 23}
_QUIET_HOURS = {
    "type": ["object", "null"],
    "required": ["start", "end"],
    "properties": {"start": _HOUR, "end": _HOUR},
}
EXAMPLE_KEYS = {
    "p256dh": "BLMQ7f7UaF4NVWFyfwPQ6_uV4Kq6qXqi2C1nFFCyciCHoq6G21Mpu"
    "Jhnn_E2DOis2IAw4u38OCjdxev54yKhcHk",
    "auth": "tZdRp2ktDoSi0YHWjC3Rvg",
}
EXAMPLE_ENDPOINT = "https://fcm.googleapis.com/fcm/send/example-browser-id"


def schemas() -> dict[str, Schema]:
    category = {
        "type": "object",
        "required": ["slug", "name"],
        "properties": {"slug": {"type": "string"}, "name": {"type": "string"}},
    }
    term = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "id": {"type": ["integer", "null"], "minimum": 1, "maximum": limits.ROW_ID_MAX},
            "slug": {"type": ["string", "null"], "maxLength": limits.CATEGORY_NAME_MAX},
            "name": {
                "type": "string",
                "minLength": 1,
                "maxLength": limits.CATEGORY_NAME_MAX,
                "pattern": r"\S",
            },
        },
    }
    counts = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string", "minLength": 1}},
        },
        "Category": category,
        "SubscriptionRequest": {
            "type": "object",
            "required": ["email", "categories"],
            "properties": {
                "email": {"type": "string", "minLength": 1, "maxLength": limits.EMAIL_MAX},
                "categories": {**_SLUGS, "minItems": 1},
            },
        },
        "Pending": {
            "type": "object",
            "required": ["status", "message"],
            "properties": {"status": {"const": "pending"}, "message": {"type": "string"}},
        },
        "BrowserSubscription": {
            "type": "object",
            "description": "What PushSubscription.toJSON() returns in the browser.",
            "required": ["endpoint", "keys"],
            "properties": {
                "endpoint": {**_TEXT_URL, "maxLength": limits.ENDPOINT_MAX},
                "keys": {
                    "type": "object",
                    "required": ["p256dh", "auth"],
                    "properties": {
                        "p256dh": {"type": "string", "minLength": 1},
                        "auth": {"type": "string", "minLength": 1},
                    },
                },
            },
        },
        "PushSubscribeRequest": {
            "type": "object",
            "required": ["subscription", "categories"],
            "properties": {
                "subscription": _ref("BrowserSubscription"),
                "categories": {**_SLUGS, "minItems": 1},
                "previousEndpoint": {
                    "type": ["string", "null"],
                    "description": "The endpoint this one renews, if any",
                },
                "timezone": {
                    "type": ["string", "null"],
                    "minLength": 1,
                    "description": "The browser's IANA time zone; absent or null: unchanged",
                },
                "quietHours": {
                    **_QUIET_HOURS,
                    "description": "No push from start:00 to end:00 local time (may span "
                    "midnight); null: none; absent: unchanged",
                },
            },
        },
        "EndpointRequest": {
            "type": "object",
            "required": ["endpoint"],
            "properties": {"endpoint": {"type": "string", "minLength": 1}},
        },
        "PushSubscribed": {
            "type": "object",
            "required": ["status", "categories", "manageUrl"],
            "properties": {
                "status": {"const": "subscribed"},
                "categories": {"type": "array", "items": _ref("Category")},
                "manageUrl": {"type": "string", "format": "uri"},
                "timezone": {"type": "string"},
                "quietHours": _QUIET_HOURS,
            },
        },
        "VapidPublicKey": {
            "type": "object",
            "required": ["publicKey"],
            "properties": {"publicKey": {"type": "string"}},
        },
        "AlertRequest": {
            "type": "object",
            "required": ["title", "channels"],
            "description": 'Send to every reader ("all": true) or to the readers of categories.',
            "properties": {
                "title": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": limits.ALERT_TITLE_MAX,
                    "pattern": r"\S",
                },
                "body": {**_TEXT, "maxLength": limits.ALERT_BODY_MAX},
                "url": {**_TEXT, "maxLength": limits.URL_MAX, "description": "Default: SITE_URL"},
                "image_url": {**_TEXT, "maxLength": limits.URL_MAX},
                "all": {"type": ["boolean", "null"]},
                "categories": {**_SLUGS, "type": ["array", "null"]},
                "channels": {"type": "array", "minItems": 1, "items": {"enum": list(CHANNELS)}},
                "send_at": {**_OPTIONAL_DATE_TIME, "description": "Schedule it; now when absent"},
                "override_quiet_hours": {
                    "type": ["boolean", "null"],
                    "description": "Breaking news: its pushes go through readers' quiet hours",
                },
            },
            "anyOf": [
                {"required": ["all"], "properties": {"all": {"const": True}}},
                {
                    "required": ["categories"],
                    "properties": {"categories": {"type": "array", "minItems": 1}},
                },
            ],
        },
        "Alert": {
            "type": "object",
            "required": [
                "id",
                "status",
                "title",
                "channels",
                "override_quiet_hours",
                "send_at",
                "started_at",
                "finished_at",
                "progress",
            ],
            "properties": {
                "id": {"type": "integer"},
                "status": {"enum": [s.value for s in AlertStatus]},
                "title": {"type": "string"},
                "channels": {"type": "array", "items": {"enum": list(CHANNELS)}},
                "override_quiet_hours": {"type": "boolean"},
                "send_at": _STAMP,
                "started_at": _STAMP,
                "finished_at": _STAMP,
                "progress": {
                    "type": "object",
                    "description": "Per channel: queued, sent, failed, gone, skipped",
                    "additionalProperties": counts,
                },
            },
        },
        "ArticleRequest": {
            "type": "object",
            "required": ["guid", "url", "title"],
            "properties": {
                "guid": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": limits.GUID_MAX,
                    "pattern": r"\S",
                    "description": "WordPress: get_the_guid($post)",
                },
                "url": _TEXT_URL,
                "title": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": limits.ARTICLE_TITLE_MAX,
                    "pattern": r"\S",
                },
                "summary": {**_TEXT, "description": "HTML; cut to a short plain text"},
                "image": {**_TEXT, "maxLength": limits.URL_MAX},
                "published_at": {
                    "anyOf": [_OPTIONAL_DATE_TIME, {"const": False}],
                    "description": "With a time zone; null, empty or false: unknown",
                },
                "categories": {
                    "type": ["array", "null"],
                    "maxItems": limits.WEBHOOK_CATEGORIES_MAX,
                    "items": {"anyOf": [{"type": "string"}, term]},
                    "description": "WordPress terms (or plain names); at most "
                    "WEBHOOK_MAX_NEW_CATEGORIES of them new to notifier",
                },
            },
        },
        "ArticleAccepted": {
            "type": "object",
            "required": ["id", "status"],
            "properties": {"id": {"type": "integer"}, "status": {"type": "string"}},
        },
    }
