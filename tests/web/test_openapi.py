"""The OpenAPI document is true: every /api/v1 route is in it and nothing else is, and
schemathesis drives every operation from it through the real app (WSGI) on PostgreSQL,
authenticated where the operation needs it: no 5xx, every answer as the document says,
everything the document forbids refused. bin/test prints how many requests it sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.core import NotSet

from notifier.db import session_factory
from notifier.domain.api_tokens import issue_token
from notifier.timeutil import utcnow
from notifier.web import create_app
from notifier.web.openapi import openapi_document
from tests.conftest import make_settings
from tests.support.api_fuzz import TALLY
from tests.web.conftest import RecordingQueue

WEBHOOK_SECRET = "fuzzing-webhook-secret"
PUBLIC_URL = "http://127.0.0.1:8000"  # make_settings' own
# Invalid input may also be refused for its size (413: over the documented 64 KiB).
REFUSALS = [*map(str, (400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429)), "5xx"]
# Bounded so the whole suite stays cheap: every operation gets its documented examples, the
# coverage phase's boundary values, and this many generated cases (positive and negative).
CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {"max-examples": 200},
        # 400 for well-formed input the server still refuses (an unknown category, an
        # endpoint on no push service, a point off the P-256 curve) is the API working.
        "checks": {
            "positive_data_acceptance": {"enabled": False},
            "negative_data_rejection": {"expected-statuses": REFUSALS},
        },
    }
)


@pytest.fixture
def fuzzed_app(tmp_path, pg_database_url):
    settings = make_settings(
        tmp_path,
        DATABASE_URL=pg_database_url,
        PUSH_ALLOWED_ORIGINS="https://fcm.googleapis.com",  # the document's example endpoint
        WEBHOOK_SECRET=WEBHOOK_SECRET,
        # Thousands of requests from one address: past the rate limits the fuzzer would meet
        # only 429s, not the validators it is here to try (the limits have their own tests).
        RATE_LIMIT_TRUSTED_NETWORKS="127.0.0.1/32",
    )
    app = create_app(settings, queue=RecordingQueue())
    app.wsgi_app = TALLY.counting(app.wsgi_app)
    return app


@pytest.fixture
def api_token(pg_database_url) -> str:
    with session_factory(pg_database_url)() as session:
        _, plaintext = issue_token(session, "schemathesis", None, utcnow())
        session.commit()
    return plaintext


def _flask_operations(app) -> set[tuple[str, str]]:
    operations = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            operations |= {(m, path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return operations


def test_the_served_document_is_the_fuzzed_one_and_names_every_api_route(fuzzed_app):
    document = fuzzed_app.test_client().get("/api/v1/openapi.json").json
    assert document == DOCUMENT
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert documented == _flask_operations(fuzzed_app)
    assert document["openapi"].startswith("3.")


def test_the_document_is_valid_openapi(fuzzed_app):
    """It passes the OpenAPI 3.1 meta-schema, and every operation loads."""
    schema.validate()
    loaded = {result.ok().label for result in schema.get_all_operations()}
    assert loaded == {f"{m} {p}" for m, p in _flask_operations(fuzzed_app)}


def _sign(case) -> dict:
    """The webhook's HMAC over exactly the bytes sent."""
    if isinstance(case.body, NotSet | bytes):  # no body, or one that is not JSON at all
        raw = case.body if isinstance(case.body, bytes) else b""
    else:
        raw = json.dumps(case.body).encode()
    digest = hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    return {"data": raw, "headers": {"X-Notifier-Signature": f"sha256={digest}"}}


DOCUMENT = openapi_document(PUBLIC_URL)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


@schema.parametrize()
# One app and database per operation, shared by its examples on purpose: state builds up as
# it would in production. Derandomized: every run sends the same cases, so a failure
# reproduces and the printed figure is comparable; no per-example deadline (a loaded CI
# machine is slow, not wrong).
@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
    derandomize=True,
    deadline=None,
)
def test_every_operation_holds_to_the_document(case, fuzzed_app, api_token):
    """Authenticated operations are fuzzed authenticated (the webhook alternately signed and
    with a token), so the fuzzer reaches the validators, not only the 401."""
    TALLY.operations.add(case.operation.label)
    TALLY.active = True
    case.operation.schema.app = fuzzed_app  # checks' own probes go through the app too
    kwargs: dict = {"app": fuzzed_app}
    if case.operation.path == "/api/v1/articles" and TALLY.requests % 2:
        kwargs |= _sign(case)
    elif case.operation.definition.raw.get("security"):
        (case.headers or {}).pop("X-Notifier-Signature", None)  # the token authenticates
        kwargs["headers"] = {"Authorization": f"Bearer {api_token}"}
    try:
        response = case.call_and_validate(**kwargs)
    finally:
        TALLY.active = False
    # A negative case may leave the credentials out on purpose; when they went, they work.
    credentials = kwargs.get("headers", {}).items()
    if credentials and all(response.request.headers.get(k) == v for k, v in credentials):
        assert response.status_code != 401, "valid credentials must get past authentication"
