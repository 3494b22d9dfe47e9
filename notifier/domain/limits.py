"""The sizes and ranges the boundary checks against, one place for the validators and the
OpenAPI document, so neither can promise what the database would refuse.

tests/domain/test_limits.py holds each against its column in models.py.
"""

from __future__ import annotations

URL_MAX = 2000  # alerts.url/image_url, articles.link/image_url/guid, push endpoints
GUID_MAX = 2000
EMAIL_MAX = 320
ENDPOINT_MAX = 2000
ALERT_TITLE_MAX, ALERT_BODY_MAX = 200, 600
ARTICLE_TITLE_MAX = 1000  # a Text column; longer is not a headline but an attack
CATEGORY_NAME_MAX = 1000  # cut to the column's 200 after HTML entities are decoded
WEBHOOK_CATEGORIES_MAX = 100
CATEGORY_SLUGS_MAX = 200  # categories one request may name (a reader's or an alert's)
IDEMPOTENCY_KEY_MAX = 150
ROW_ID_MAX = 2**31 - 1  # INTEGER primary keys in URLs and the API; a larger id names no row
JSON_DEPTH_MAX = 16  # our documents nest 4 deep at most
