"""The boundary's limits never exceed the columns they guard (notifier/domain/limits.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import Integer

from notifier.domain import limits
from notifier.models import Alert, ApiToken, Article, Editor, Feed, PushSubscription, Subscriber

LONGEST_TOKEN_PREFIX = len(f"token-{limits.ROW_ID_MAX}:")  # alerts_api keys per token


@pytest.mark.parametrize(
    ("limit", "column"),
    [
        (limits.URL_MAX, Alert.url),
        (limits.URL_MAX, Alert.image_url),
        (limits.URL_MAX, Article.link),
        (limits.URL_MAX, Article.image_url),
        (limits.GUID_MAX, Article.guid),
        (limits.EMAIL_MAX, Subscriber.email),
        (limits.ENDPOINT_MAX, PushSubscription.endpoint),
        (limits.ALERT_TITLE_MAX, Alert.title),
        (LONGEST_TOKEN_PREFIX + limits.IDEMPOTENCY_KEY_MAX, Alert.idempotency_key),
    ],
    ids=lambda value: getattr(value, "key", value),
)
def test_a_limit_fits_its_column(limit, column):
    assert limit <= column.property.columns[0].type.length


@pytest.mark.parametrize("model", [Alert, ApiToken, Editor, Feed], ids=lambda m: m.__name__)
def test_ids_in_urls_are_32_bit(model):
    """The URL converter caps ids at ROW_ID_MAX; a BIGINT id column would need a larger cap."""
    assert type(model.__table__.c.id.type) is Integer
    assert limits.ROW_ID_MAX == 2**31 - 1
