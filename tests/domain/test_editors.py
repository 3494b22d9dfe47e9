"""Editor accounts and login throttling, on PostgreSQL and SQLite."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from notifier.domain import editors
from notifier.domain.editors import (
    EditorError,
    LoginRefused,
    LoginThrottled,
    authenticate,
    create_editor,
    disable_editor,
    list_editors,
    set_password,
)
from notifier.models import EditorRole, LoginAttempt
from notifier.timeutil import utcnow

PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Limits:
    login_max_attempts_per_account: int = 3
    login_max_attempts_per_ip: int = 5
    login_window_seconds: int = 900
    login_max_attempts_per_account_new_browsers: int = 4


LIMITS = Limits()


@pytest.fixture
def editor(session):
    row = create_editor(session, "Ed@Example.com", PASSWORD, "editor")
    session.commit()
    return row


def attempt(session, email: str, password: str, ip: str = "192.0.2.1", now=None):
    try:
        return authenticate(session, email, password, ip, now or utcnow(), LIMITS)
    finally:
        session.commit()  # what the login view does: failures are kept


def refusal(session, email: str, password: str, **kwargs) -> str:
    with pytest.raises(LoginRefused) as caught:
        attempt(session, email, password, **kwargs)
    return str(caught.value)


def test_create_editor_normalizes_the_address_and_stores_only_an_argon2id_hash(session, editor):
    assert editor.email == "ed@example.com" and editor.role is EditorRole.EDITOR
    assert editor.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in editor.password_hash
    assert editor.disabled_at is None


def test_an_older_hash_still_logs_in_and_is_upgraded_to_argon2id(session, editor):
    from werkzeug.security import generate_password_hash

    editor.password_hash = generate_password_hash(PASSWORD, method="scrypt")
    session.commit()
    refusal(session, "ed@example.com", "wrong password here")
    assert editor.password_hash.startswith("scrypt:"), "a failed login changes nothing"
    assert attempt(session, "ed@example.com", PASSWORD).id == editor.id
    assert editor.password_hash.startswith("$argon2id$")
    assert attempt(session, "ed@example.com", PASSWORD).id == editor.id


@pytest.mark.parametrize(
    ("email", "password", "role", "message"),
    [
        ("not an address", PASSWORD, "editor", "That email address is not valid"),
        ("", PASSWORD, "editor", "Please enter an email address."),
        ("a@example.com", "short", "editor", "at least 12 characters"),
        ("a@example.com", "x" * 11, "editor", "at least 12 characters"),
        ("a@example.com", "x" * 1001, "editor", "at most 1000 characters"),
        ("a@example.com", PASSWORD, "owner", "The role must be editor or admin."),
    ],
)
def test_create_editor_refuses_bad_input_with_a_sentence(session, email, password, role, message):
    with pytest.raises(EditorError, match=message):
        create_editor(session, email, password, role)


def test_an_address_has_one_account(session, editor):
    with pytest.raises(EditorError, match="already exists"):
        create_editor(session, "ED@example.com", PASSWORD, "admin")


def test_set_password_replaces_the_old_one(session, editor):
    set_password(session, "ed@example.com", "a brand new passphrase")
    session.commit()
    assert refusal(session, "ed@example.com", PASSWORD) == "Wrong email or password."
    assert attempt(session, "ed@example.com", "a brand new passphrase").id == editor.id


def test_set_password_of_an_unknown_address_or_too_short(session, editor):
    with pytest.raises(EditorError, match=r"No editor has the address nobody@example\.com"):
        set_password(session, "nobody@example.com", "long enough password")
    with pytest.raises(EditorError, match="at least 12"):
        set_password(session, "ed@example.com", "short")


def test_the_last_active_admin_cannot_be_disabled(session, editor):
    boss = create_editor(session, "boss@example.com", PASSWORD, EditorRole.ADMIN)
    with pytest.raises(EditorError, match="last active admin"):
        disable_editor(session, boss.id, utcnow())
    second = create_editor(session, "second@example.com", PASSWORD, EditorRole.ADMIN)
    assert disable_editor(session, boss.id, utcnow()).disabled_at is not None
    with pytest.raises(EditorError, match="last active admin"):
        disable_editor(session, second.id, utcnow())
    with pytest.raises(EditorError, match="does not exist"):
        disable_editor(session, 999_999, utcnow())


def test_list_editors_by_address(session, editor):
    create_editor(session, "alice@example.com", PASSWORD)
    assert [e.email for e in list_editors(session)] == ["alice@example.com", "ed@example.com"]


def test_login_accepts_the_password_whatever_the_address_case(session, editor):
    assert attempt(session, "  ED@example.COM ", PASSWORD).id == editor.id


def test_unknown_address_wrong_password_and_disabled_account_look_the_same(session, editor):
    wrong = refusal(session, "ed@example.com", "wrong password!")
    unknown = refusal(session, "nobody@example.com", PASSWORD)
    malformed = refusal(session, "not an address", PASSWORD)
    disable_editor(session, editor.id, utcnow())
    session.commit()
    disabled = refusal(session, "ed@example.com", PASSWORD)
    assert wrong == unknown == malformed == disabled == "Wrong email or password."


def test_unknown_addresses_cost_a_password_check_too(session, editor, monkeypatch):
    checked, real_check = [], editors.verify_password

    def recording_check(stored: str, password: str) -> bool:
        checked.append(stored.split("$")[3])  # the scheme's cost parameters
        return real_check(stored, password)

    monkeypatch.setattr("notifier.domain.editors.verify_password", recording_check)
    refusal(session, "nobody@example.com", PASSWORD)
    refusal(session, "ed@example.com", "wrong password!")
    assert checked == ["m=19456,t=2,p=1", "m=19456,t=2,p=1"]


def test_failures_per_account_throttle_even_the_right_password(session, editor):
    now = utcnow()
    for _ in range(LIMITS.login_max_attempts_per_account):
        refusal(session, "ed@example.com", "wrong password!", now=now)
    with pytest.raises(LoginThrottled) as caught:
        attempt(session, "ed@example.com", PASSWORD, now=now + timedelta(seconds=30))
    assert str(caught.value) == "Too many attempts; try again in 15 minutes."
    assert caught.value.retry_after_seconds == 870
    later = now + timedelta(seconds=LIMITS.login_window_seconds + 1)
    assert attempt(session, "ed@example.com", PASSWORD, now=later).id == editor.id


def test_throttling_does_not_tell_whether_the_address_exists(session, editor):
    now = utcnow()
    for _ in range(LIMITS.login_max_attempts_per_account):
        refusal(session, "nobody@example.com", "wrong password!", now=now)
    with pytest.raises(LoginThrottled, match="Too many attempts"):
        attempt(session, "nobody@example.com", "wrong password!", now=now)


def test_failures_per_ip_throttle_every_address_from_it(session, editor):
    now = utcnow()
    for number in range(LIMITS.login_max_attempts_per_ip):
        refusal(session, f"guess{number}@example.com", "wrong password!", now=now)
    with pytest.raises(LoginThrottled):
        attempt(session, "ed@example.com", PASSWORD, now=now)
    assert attempt(session, "ed@example.com", PASSWORD, ip="198.51.100.7", now=now)


def test_a_strangers_guesses_never_lock_the_editor_out(session, editor):
    now = utcnow()
    for _ in range(LIMITS.login_max_attempts_per_account):
        refusal(session, "ed@example.com", "wrong password!", ip="203.0.113.66", now=now)
    with pytest.raises(LoginThrottled):
        attempt(session, "ed@example.com", PASSWORD, ip="203.0.113.66", now=now)
    assert attempt(session, "ed@example.com", PASSWORD, ip="198.51.100.7", now=now).id == editor.id


def test_guessing_from_many_clients_locks_new_browsers_out_not_known_ones(session, editor):
    now = utcnow()
    for number in range(LIMITS.login_max_attempts_per_account_new_browsers):
        refusal(session, "ed@example.com", "wrong password!", ip=f"203.0.113.{number}", now=now)
    with pytest.raises(LoginThrottled):
        attempt(session, "ed@example.com", PASSWORD, ip="198.51.100.7", now=now)
    known = authenticate(session, "ed@example.com", PASSWORD, "198.51.100.7", now, LIMITS,
                         device="the-editors-own-browser")  # fmt: skip
    assert known.id == editor.id


def test_a_success_clears_the_account_failures(session, editor):
    now = utcnow()
    for _ in range(2):
        refusal(session, "ed@example.com", "wrong password!", now=now)
    attempt(session, "ed@example.com", PASSWORD, now=now)
    for _ in range(2):
        refusal(session, "ed@example.com", "wrong password!", now=now)
    assert attempt(session, "ed@example.com", PASSWORD, now=now).id == editor.id
    keys = set(session.scalars(select(LoginAttempt.key)))
    assert keys == {"ip:192.0.2.1"}, "the address's failures are gone, the client's stay"


def test_failures_older_than_the_window_do_not_count_and_are_pruned(session, editor):
    long_ago = utcnow() - timedelta(seconds=LIMITS.login_window_seconds + 5)
    for _ in range(LIMITS.login_max_attempts_per_account):
        refusal(session, "ed@example.com", "wrong password!", now=long_ago)
    refusal(session, "ed@example.com", "wrong password!")
    # this client at this address, the address from new browsers, and the IP
    assert session.scalar(select(func.count()).select_from(LoginAttempt)) == 3
    assert attempt(session, "ed@example.com", PASSWORD).id == editor.id
