"""API bearer tokens: shown once, stored hashed, revocable; on PostgreSQL and SQLite."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import text

from notifier.domain.api_tokens import (
    ApiTokenError,
    issue_token,
    list_tokens,
    parse_bearer,
    revoke_token,
    token_for_bearer,
)
from notifier.timeutil import utcnow


@pytest.fixture
def issued(session):
    token, plaintext = issue_token(session, "  CMS webhook ", None, utcnow())
    session.commit()
    return token, plaintext


def test_a_token_is_random_and_stored_only_as_its_sha256(session, issued):
    token, plaintext = issued
    assert plaintext.startswith("ntf_") and len(plaintext) == 4 + 43
    assert token.name == "CMS webhook" and token.prefix == plaintext[:12]
    assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    rows = session.execute(text("SELECT * FROM api_tokens")).all()
    stored = " ".join(str(value) for row in rows for value in row)
    assert plaintext not in stored and plaintext[12:] not in stored
    assert issue_token(session, "other", None, utcnow())[1] != plaintext


def test_the_bearer_header_finds_the_token_and_marks_it_used(session, issued):
    token, plaintext = issued
    now = utcnow() + timedelta(minutes=5)
    found = token_for_bearer(session, f"Bearer {plaintext}", now)
    assert found is not None and found.id == token.id and found.last_used_at == now
    assert token_for_bearer(session, f"bearer {plaintext}", now) is not None  # RFC 7235


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "{token}",
        "Basic {token}",
        "Token {token}",
        "Bearer {token} extra",
        "Bearer {token}x",
        "Bearer {token_cut}",
        "Bearer ntf_",
        "Bearer ntf_" + "A" * 43,
        "Bearer {token}\x00",
        "Bearer " + "x" * 10_000,
    ],
)
def test_anything_but_a_live_bearer_token_is_no_token(session, issued, header):
    _, plaintext = issued
    if header is not None:
        header = header.format(token=plaintext, token_cut=plaintext[:-1])
    assert token_for_bearer(session, header, utcnow()) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer ntf_abcdefghijklmnopqrstuvwxyz", "ntf_abcdefghijklmnopqrstuvwxyz"),
        ("  BEARER ntf_abcdefghijklmnopqrstuvwxyz  ", "ntf_abcdefghijklmnopqrstuvwxyz"),
        ("Bearer abcdefghijklmnopqrstuvwxyz", None),
        ("Bearer ntf_short", None),
        ("Bearer ntf_abcdefghijklmnopqrst/uvwxyz", None),
    ],
)
def test_parse_bearer(header, expected):
    assert parse_bearer(header) == expected


def test_a_revoked_token_no_longer_authenticates(session, issued):
    token, plaintext = issued
    first = utcnow()
    revoke_token(session, token.id, first)
    revoke_token(session, token.id, first + timedelta(hours=1))
    session.commit()
    assert token.revoked_at == first, "revoking again keeps the first time"
    assert token_for_bearer(session, f"Bearer {plaintext}", utcnow()) is None
    with pytest.raises(ApiTokenError, match="does not exist"):
        revoke_token(session, 999_999, utcnow())


@pytest.mark.parametrize("name", ["", "   ", None, 42, "x" * 201])
def test_a_token_needs_a_sensible_name(session, name):
    with pytest.raises(ApiTokenError):
        issue_token(session, name, None, utcnow())


def test_list_tokens_newest_first(session, issued):
    later, _ = issue_token(session, "script", None, utcnow() + timedelta(seconds=1))
    assert [t.name for t in list_tokens(session)] == ["script", "CMS webhook"]
    assert later.created_by_id is None
