"""Signed, purpose-scoped link tokens: round trips, purpose separation, tampering, expiry."""

from __future__ import annotations

import base64
import json
import time

import pytest
from itsdangerous import TimestampSigner, URLSafeSerializer

from notifier.tokens import ConfirmRequest, TokenError, Tokens, UnsubscribeRequest, address_digest

SECRET = "test-secret-key"
EMAIL = "reader@example.com"


@pytest.fixture
def tokens() -> Tokens:
    return Tokens(SECRET, confirm_max_age_seconds=60)


def payload_of(token: str) -> dict:
    """What anyone holding the link can read without the key."""
    encoded = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))


def with_payload(token: str, payload: dict) -> str:
    """The same signature on a different payload: a forgery attempt."""
    encoded = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode())
    return ".".join([encoded.decode().rstrip("="), *token.split(".")[1:]])


def read(tokens: Tokens, purpose: str, token: str):
    return {
        "confirm": tokens.read_confirm_token,
        "manage": tokens.read_manage_token,
        "unsubscribe": tokens.read_unsubscribe_token,
    }[purpose](token)


def make(tokens: Tokens, purpose: str) -> str:
    return {
        "confirm": lambda: tokens.confirm_token(7, EMAIL, [3, 1]),
        "manage": lambda: tokens.manage_token(7),
        "unsubscribe": lambda: tokens.unsubscribe_token(7, [3, 1]),
    }[purpose]()


PURPOSES = ["confirm", "manage", "unsubscribe"]


def test_confirm_token_round_trip(tokens):
    request = tokens.read_confirm_token(tokens.confirm_token(7, EMAIL, [3, 1, 2]))
    assert request == ConfirmRequest(7, address_digest(SECRET, EMAIL), (1, 2, 3))
    assert request.is_for(EMAIL)
    assert not request.is_for("other@example.com")


def test_manage_token_round_trip(tokens):
    assert tokens.read_manage_token(tokens.manage_token(42)) == 42


def test_unsubscribe_token_round_trip(tokens):
    assert tokens.read_unsubscribe_token(tokens.unsubscribe_token(42, [9, 4])) == (
        UnsubscribeRequest(42, (4, 9))
    )


def test_tokens_are_url_safe(tokens):
    for purpose in PURPOSES:
        token = make(tokens, purpose)
        assert token, purpose
        assert set(token) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
        ), token


@pytest.mark.parametrize("made_for", PURPOSES)
@pytest.mark.parametrize("read_as", PURPOSES)
def test_a_token_is_accepted_only_for_its_own_purpose(tokens, made_for, read_as):
    token = make(tokens, made_for)
    if made_for == read_as:
        read(tokens, read_as, token)  # accepted
    else:
        with pytest.raises(TokenError):
            read(tokens, read_as, token)


@pytest.mark.parametrize("purpose", PURPOSES)
def test_a_token_signed_with_another_secret_key_is_rejected(tokens, purpose):
    foreign = make(Tokens("another-secret-key", confirm_max_age_seconds=60), purpose)
    with pytest.raises(TokenError):
        read(tokens, purpose, foreign)


def _change_signature(token: str) -> str:
    # The first character of the signature carries 6 full bits (the last one partly padding).
    head, _, signature = token.rpartition(".")
    return f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


@pytest.mark.parametrize("purpose", PURPOSES)
@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(_change_signature, id="signature-changed"),
        pytest.param(lambda t: t[:-3], id="truncated"),
        pytest.param(lambda t: t.split(".")[0], id="signature-removed"),
        pytest.param(lambda t: "x" + t, id="payload-prefixed"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: "not-a-token", id="garbage"),
        pytest.param(lambda t: "...", id="dots"),
    ],
)
def test_tampered_tokens_are_rejected(tokens, purpose, tamper):
    with pytest.raises(TokenError):
        read(tokens, purpose, tamper(make(tokens, purpose)))


@pytest.mark.parametrize(
    ("purpose", "forged"),
    [
        ("confirm", {"s": 8, "e": address_digest(SECRET, EMAIL), "c": [1, 3]}),
        ("confirm", {"s": 7, "e": address_digest(SECRET, "attacker@example.com"), "c": [1, 3]}),
        ("confirm", {"s": 7, "e": address_digest(SECRET, EMAIL), "c": [1, 2, 3]}),
        ("manage", {"s": 8}),
        ("unsubscribe", {"s": 8, "c": [1, 3]}),
        ("unsubscribe", {"s": 7, "c": [1, 2, 3]}),
    ],
)
def test_a_changed_payload_under_the_original_signature_is_rejected(tokens, purpose, forged):
    token = make(tokens, purpose)
    forgery = with_payload(token, forged)
    assert forgery != token
    with pytest.raises(TokenError):
        read(tokens, purpose, forgery)


def test_with_payload_helper_reproduces_a_genuine_token(tokens):
    """Guards the forgery tests above: the helper alone does not break a valid token."""
    token = tokens.unsubscribe_token(7, [3, 1])
    assert with_payload(token, payload_of(token)) == token


def _confirm_token_made_seconds_ago(tokens: Tokens, monkeypatch, seconds: int) -> str:
    with monkeypatch.context() as patch:
        then = int(time.time()) - seconds
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: then)
        return tokens.confirm_token(7, EMAIL, [1])


def test_a_confirm_token_past_its_max_age_is_rejected_as_expired(tokens, monkeypatch):
    token = _confirm_token_made_seconds_ago(tokens, monkeypatch, 120)
    with pytest.raises(TokenError, match="expired"):
        tokens.read_confirm_token(token)


def test_a_confirm_token_within_its_max_age_is_accepted(tokens, monkeypatch):
    token = _confirm_token_made_seconds_ago(tokens, monkeypatch, 30)
    assert tokens.read_confirm_token(token).subscriber_id == 7


def test_confirm_max_age_comes_from_the_constructor(monkeypatch):
    long_lived = Tokens(SECRET, confirm_max_age_seconds=7 * 24 * 3600)
    token = _confirm_token_made_seconds_ago(long_lived, monkeypatch, 6 * 24 * 3600)
    assert long_lived.read_confirm_token(token).subscriber_id == 7
    with pytest.raises(TokenError, match="expired"):
        Tokens(SECRET, confirm_max_age_seconds=5 * 24 * 3600).read_confirm_token(token)


def test_manage_and_unsubscribe_links_do_not_expire(tokens, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(time, "time", lambda: 0.0)
        manage, unsubscribe = tokens.manage_token(7), tokens.unsubscribe_token(7, [1])
    assert tokens.read_manage_token(manage) == 7
    assert tokens.read_unsubscribe_token(unsubscribe).subscriber_id == 7


def test_confirm_token_does_not_reveal_the_address(tokens):
    token = tokens.confirm_token(7, EMAIL, [1])
    assert EMAIL not in token
    assert EMAIL not in json.dumps(payload_of(token))
    assert "reader" not in json.dumps(payload_of(token))


@pytest.mark.parametrize("purpose", ["manage", "unsubscribe"])
def test_other_tokens_carry_only_ids(tokens, purpose):
    payload = payload_of(make(tokens, purpose))
    assert set(payload) <= {"s", "c"}


def test_token_error_messages_are_fit_for_readers(tokens):
    with pytest.raises(TokenError, match=r"^This confirmation link is not valid\.$"):
        tokens.read_confirm_token("garbage")
    with pytest.raises(TokenError, match=r"^This unsubscribe link is not valid\.$"):
        tokens.read_unsubscribe_token("garbage")
    with pytest.raises(TokenError, match=r"^This link is not valid\.$"):
        tokens.read_manage_token("garbage")


def test_links_signed_by_plain_itsdangerous_still_work_compressed_or_not(tokens):
    """Fan-out signs without trying zlib; links sent before (some compressed) stay valid."""
    plain = URLSafeSerializer(SECRET, salt="notifier.unsubscribe")
    many = list(range(1, 80))  # long enough that itsdangerous compressed it
    compressed = plain.dumps({"s": 5, "c": many})
    assert compressed.startswith(".")
    assert tokens.read_unsubscribe_token(compressed) == UnsubscribeRequest(5, tuple(many))
    assert tokens.unsubscribe_token(5, [2, 1]) == plain.dumps({"s": 5, "c": [1, 2]})
    assert tokens.read_unsubscribe_token(tokens.unsubscribe_token(5, many)).category_ids == tuple(
        many
    )


@pytest.mark.parametrize("fallbacks", [(), ("an-older-key",)])
def test_fan_out_tokens_are_exactly_what_itsdangerous_signs(fallbacks):
    """The fast signer (compact JSON encoder made once, or the JSON formatted by hand for the
    fan-out's links; HMAC-SHA1 from a keyed HMAC copied per link) makes the very tokens
    itsdangerous makes, for every purpose it signs, with the current key."""
    fast = Tokens(SECRET, 60, fallbacks)
    keys = [*fallbacks, SECRET]

    def plain(salt: str, payload: dict) -> str:
        return URLSafeSerializer(keys, salt=f"notifier.{salt}").dumps(payload)

    for n in (1, 7, 123456789):
        assert fast.manage_token(n) == plain("manage", {"s": n})
        categories = sorted([9, n])
        assert fast.unsubscribe_token(n, [9, n]) == plain("unsubscribe", {"s": n, "c": categories})
        assert fast.unsubscribe_token(n, []) == plain("unsubscribe", {"s": n, "c": []})
        assert fast.push_manage_token(n) == plain("push-manage", {"p": n})
        assert fast.email_view_token("article", n, [2]) == plain(
            "email-view", {"k": "article", "n": n, "c": [2]}
        )


def test_a_new_secret_key_keeps_links_already_sent_working_through_fallbacks():
    """Key rotation: SECRET_KEY=new, SECRET_KEY_FALLBACKS=old until the old links expire."""
    old = Tokens("the-old-secret-key", confirm_max_age_seconds=60)
    links = {
        "unsubscribe": old.unsubscribe_token(7, [1, 2]),
        "manage": old.manage_token(7),
        "push": old.push_manage_token(9),
        "confirm": old.confirm_token(7, EMAIL, [1]),
    }
    rotated = Tokens(SECRET, confirm_max_age_seconds=60, fallback_keys=("the-old-secret-key",))
    assert rotated.read_unsubscribe_token(links["unsubscribe"]).category_ids == (1, 2)
    assert rotated.read_manage_token(links["manage"]) == 7
    assert rotated.read_push_manage_token(links["push"]) == 9
    assert rotated.read_confirm_token(links["confirm"]).is_for(EMAIL)
    # New links are signed with the new key only: the old key alone no longer reads them.
    with pytest.raises(TokenError):
        old.read_manage_token(rotated.manage_token(7))
    # Once the fallback is dropped, the old links stop working.
    done = Tokens(SECRET, confirm_max_age_seconds=60)
    with pytest.raises(TokenError):
        done.read_unsubscribe_token(links["unsubscribe"])
    assert not done.read_confirm_token(rotated.confirm_token(7, EMAIL, [1])).is_for("x@y.zz")


def test_an_editor_session_survives_a_key_rotation_with_the_fallback(tmp_path, database_url):
    from notifier.db import session_scope
    from notifier.domain.editors import create_editor
    from notifier.web import create_app
    from tests.conftest import make_settings
    from tests.web.conftest import logged_in_client

    with session_scope(database_url) as session:
        editor = create_editor(session, "ed@example.com", "correct horse battery")
        session.commit()
        before = create_app(make_settings(tmp_path, DATABASE_URL=database_url,
                                          SECRET_KEY="the-old-secret-key"))  # fmt: skip
        cookie = logged_in_client(before, editor).get_cookie("session").value
    after = create_app(make_settings(tmp_path, DATABASE_URL=database_url, SECRET_KEY=SECRET,
                                     SECRET_KEY_FALLBACKS="the-old-secret-key"))  # fmt: skip
    client = after.test_client()
    client.set_cookie("session", cookie)
    assert client.get("/editor/").status_code == 200
    without = create_app(make_settings(tmp_path, DATABASE_URL=database_url, SECRET_KEY=SECRET))
    stranger = without.test_client()
    stranger.set_cookie("session", cookie)
    assert stranger.get("/editor/").status_code == 302
