"""Editor accounts: creation, passwords and login with throttling.

A refused login never says whether the address exists or the account is disabled: one
message, and the same password-hashing work for every case. Failed attempts are rows in
login_attempts, so the limits hold across web processes.
"""

from __future__ import annotations

import contextlib
import math
from datetime import datetime, timedelta
from functools import cache
from secrets import token_urlsafe
from typing import Protocol

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from notifier.domain.subscriptions import SubscriptionError, normalize_email
from notifier.models import Editor, EditorRole, LoginAttempt
from notifier.passwords import hash_password, needs_rehash, verify_password

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1000
REFUSED = "Wrong email or password."


class EditorError(ValueError):
    """Input an admin can correct; the message is a sentence fit to show them."""


class LoginRefused(Exception):
    """Unknown address, wrong password or disabled account: deliberately indistinguishable."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


class LoginThrottled(Exception):
    """Too many failures for this address or client; retry_after_seconds says when to retry."""

    def __init__(self, retry_after_seconds: int) -> None:
        self.retry_after_seconds = retry_after_seconds
        minutes = max(1, math.ceil(retry_after_seconds / 60))
        super().__init__(
            f"Too many attempts; try again in {minutes} minute{'s' if minutes > 1 else ''}."
        )


class LoginLimits(Protocol):
    """What authenticate needs from Settings (tests may pass any object with these)."""

    @property
    def login_max_attempts_per_account(self) -> int: ...

    @property
    def login_max_attempts_per_ip(self) -> int: ...

    @property
    def login_window_seconds(self) -> int: ...

    @property
    def login_max_attempts_per_account_new_browsers(self) -> int: ...


def _hash(password: str) -> str:
    return hash_password(password)


@cache
def _dummy_hash() -> str:
    """Checked against for unknown addresses so they cost as much time as known ones."""
    return _hash(token_urlsafe(16))


def validate_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise EditorError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters long.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise EditorError(f"The password must be at most {MAX_PASSWORD_LENGTH} characters long.")
    return password


def _address(email: object) -> str:
    try:
        return normalize_email(email)
    except SubscriptionError as error:
        raise EditorError(str(error)) from None


def _role(role: object) -> EditorRole:
    if isinstance(role, str):
        with contextlib.suppress(ValueError):
            return EditorRole(role)
    raise EditorError("The role must be editor or admin.")


def editor_by_email(session: Session, email: str) -> Editor | None:
    return session.scalar(select(Editor).where(Editor.email == email))


def create_editor(
    session: Session, email: object, password: object, role: object = EditorRole.EDITOR
) -> Editor:
    """Add an account; raises EditorError for a bad address, short password or a duplicate."""
    address, chosen_role = _address(email), _role(role)
    secret = validate_password(password)
    if editor_by_email(session, address) is not None:
        raise EditorError(f"An editor with the address {address} already exists.")
    editor = Editor(email=address, password_hash=_hash(secret), role=chosen_role)
    session.add(editor)
    session.flush()
    return editor


def set_password(session: Session, email: object, password: object) -> Editor:
    secret = validate_password(password)
    address = _address(email)
    editor = editor_by_email(session, address)
    if editor is None:
        raise EditorError(f"No editor has the address {address}.")
    editor.password_hash = _hash(secret)
    end_sessions(editor)
    session.flush()
    return editor


def end_sessions(editor: Editor) -> None:
    """Every session cookie this editor was given stops working (logout, new password)."""
    editor.session_version = (editor.session_version or 0) + 1


def disable_editor(session: Session, editor_id: int, now: datetime) -> Editor:
    """Disable an account (kept for the record); the last active admin cannot be disabled."""
    editor = session.get(Editor, editor_id)
    if editor is None:
        raise EditorError("That editor does not exist.")
    if editor.disabled_at is not None:
        return editor
    if editor.role is EditorRole.ADMIN and _active_admins(session) <= 1:
        raise EditorError("The last active admin cannot be disabled.")
    editor.disabled_at = now
    end_sessions(editor)
    session.flush()
    return editor


def _active_admins(session: Session) -> int:
    query = select(func.count()).where(
        Editor.role == EditorRole.ADMIN, Editor.disabled_at.is_(None)
    )
    return session.scalar(query) or 0


def list_editors(session: Session) -> list[Editor]:
    return list(session.scalars(select(Editor).order_by(Editor.email)))


def authenticate(
    session: Session, email: str, password: str, ip: str, now: datetime, limits: LoginLimits,
    device: str | None = None,
) -> Editor:  # fmt: skip
    """The active editor with these credentials, or LoginRefused / LoginThrottled.

    Throttling is checked first and does not depend on whether the address exists. Failures
    count per client (address and IP, or address and a browser this editor logged in from
    before: `device`) and per IP, so a stranger's guesses lock out the stranger, never the
    editor. Across all clients an address is locked only for browsers that never logged in
    to it. A success clears that client's failures; the caller commits in every case.
    """
    address = login_address(email)
    keys = _throttle_keys(address, ip, device, limits)
    window = timedelta(seconds=limits.login_window_seconds)
    wait = max(_throttle_seconds(session, key, limit, now, window) for key, limit in keys.items())
    if wait > 0:
        raise LoginThrottled(wait)
    editor = editor_by_email(session, address)
    valid = verify_password(editor.password_hash if editor else _dummy_hash(), password)
    if editor is None or not valid or editor.disabled_at is not None:
        _record_failure(session, keys, now, window)
        raise LoginRefused()
    own = [key for key in keys if not key.startswith("ip:")]  # the IP's failures stay
    session.execute(delete(LoginAttempt).where(LoginAttempt.key.in_(own)))
    if needs_rehash(editor.password_hash):  # an older scheme or cost: upgrade it now
        editor.password_hash = hash_password(password)
    return editor


def _throttle_keys(address: str, ip: str, device: str | None, limits: LoginLimits) -> dict:
    per_client = limits.login_max_attempts_per_account
    keys = {f"ip:{ip}"[:400]: limits.login_max_attempts_per_ip}
    if device:  # a browser this editor logged in from before: its own budget only
        keys[f"device:{device}"[:400]] = per_client
    else:
        keys[f"client:{address}|{ip}"[:400]] = per_client
        keys[f"account:{address}"[:400]] = limits.login_max_attempts_per_account_new_browsers
    return keys


def login_address(email: str) -> str:
    """The address a login form names, normalised as accounts are (throttling keys too)."""
    try:
        return normalize_email(email)
    except SubscriptionError:
        return str(email).strip().lower()[:320]


def _throttle_seconds(
    session: Session, key: str, limit: int, now: datetime, window: timedelta
) -> int:
    """Seconds until fewer than `limit` failures remain in the window (0: not throttled)."""
    times = list(
        session.scalars(
            select(LoginAttempt.at)
            .where(LoginAttempt.key == key, LoginAttempt.at > now - window)
            .order_by(LoginAttempt.at.desc())
            .limit(limit)
        )
    )
    if len(times) < limit:
        return 0
    # The limit-th most recent failure must leave the window before another try.
    return max(1, math.ceil((times[-1] + window - now).total_seconds()))


def _record_failure(
    session: Session, keys: dict[str, int], now: datetime, window: timedelta
) -> None:
    """Keep this failure under every key; prune what has left the window while here."""
    session.execute(delete(LoginAttempt).where(LoginAttempt.at <= now - window))
    session.add_all(LoginAttempt(key=key, at=now) for key in keys)
    session.flush()
