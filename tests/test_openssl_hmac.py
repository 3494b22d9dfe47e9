"""The OpenSSL HMAC shortcuts give the standard library's answers, and without `_hashlib`
the standard functions take over."""

from __future__ import annotations

import hmac
import os

import pytest

from notifier import openssl_hmac
from notifier.tokens import Tokens


@pytest.mark.parametrize("shortcut", [True, False], ids=["_hashlib", "fallback"])
def test_hmac_sha256_is_hmac_digest(shortcut, monkeypatch):
    if not shortcut:
        monkeypatch.setattr(openssl_hmac, "_hmac_new", None)
    for size in (0, 16, 32, 64, 65, 200):  # keys shorter and longer than SHA-256's block
        key, message = os.urandom(size), os.urandom(size * 3 + 1)
        assert openssl_hmac.hmac_sha256(key, message) == hmac.digest(key, message, "sha256")


def test_a_keyed_hmac_copied_per_message_signs_as_hmac_digest():
    mac = openssl_hmac.keyed(b"k" * 20, "sha1")
    for message in (b"", b"one", b"two" * 50):
        each = mac.copy()
        each.update(message)
        assert each.digest() == hmac.digest(b"k" * 20, message, "sha1")


def test_without_hashlib_links_are_signed_the_same(monkeypatch):
    fast = Tokens("s" * 32, 60)
    links = (fast.unsubscribe_token(7, [3, 1]), fast.manage_token(7), fast.push_manage_token(9))
    monkeypatch.setattr(openssl_hmac, "_hmac_new", None)
    plain = Tokens("s" * 32, 60)
    assert plain._manage._keyed is None  # the fallback is what is tested
    assert (plain.unsubscribe_token(7, [3, 1]), plain.manage_token(7),
            plain.push_manage_token(9)) == links  # fmt: skip
