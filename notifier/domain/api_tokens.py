"""API bearer tokens for scripts and the CMS.

Only a token's SHA-256 is stored: a database leak reveals no usable token. Tokens are
random 256-bit values, so a plain hash (no salt, no KDF) is enough, and looking one up by
its hash compares nothing secret in Python, so timing reveals nothing.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from notifier.models import ApiToken

TOKEN_PREFIX = "ntf_"
DISPLAY_PREFIX_LENGTH = 12  # "ntf_" and 8 random characters: enough to tell tokens apart
_TOKEN_SHAPE = re.compile(r"ntf_[A-Za-z0-9_-]{20,200}")


class ApiTokenError(ValueError):
    """Input an admin can correct; the message is a sentence fit to show them."""


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def issue_token(
    session: Session, name: object, created_by_id: int | None, now: datetime
) -> tuple[ApiToken, str]:
    """A new token row and its plaintext, which exists only in this return value."""
    if not isinstance(name, str) or not name.strip():
        raise ApiTokenError("Please name the token after who or what will use it.")
    if len(name.strip()) > 200:
        raise ApiTokenError("The token name must be at most 200 characters long.")
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        name=name.strip(),
        token_hash=hash_token(plaintext),
        prefix=plaintext[:DISPLAY_PREFIX_LENGTH],
        created_by_id=created_by_id,
        created_at=now,
    )
    session.add(token)
    session.flush()
    return token, plaintext


def revoke_token(session: Session, token_id: int, now: datetime) -> ApiToken:
    """Revoke for good; revoking twice keeps the first time."""
    token = session.get(ApiToken, token_id)
    if token is None:
        raise ApiTokenError("That token does not exist.")
    if token.revoked_at is None:
        token.revoked_at = now
        session.flush()
    return token


def parse_bearer(authorization_header: str | None) -> str | None:
    """The token in "Bearer <token>" (scheme case-insensitive, RFC 7235), or None."""
    if not authorization_header:
        return None
    scheme, _, value = authorization_header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not _TOKEN_SHAPE.fullmatch(value):
        return None
    return value


def token_for_bearer(
    session: Session, authorization_header: str | None, now: datetime
) -> ApiToken | None:
    """The live token an Authorization header carries, marked as used; None otherwise."""
    plaintext = parse_bearer(authorization_header)
    if plaintext is None:
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext)))
    if token is None or token.revoked_at is not None:
        return None
    token.last_used_at = now
    session.flush()
    return token


def list_tokens(session: Session) -> list[ApiToken]:
    return list(
        session.scalars(select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc()))
    )
