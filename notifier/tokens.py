"""Signed, purpose-scoped tokens for links in messages.

A token signed for one purpose (confirm, manage, unsubscribe) is rejected for any other,
and none can be forged or derived from an address without SECRET_KEY.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode

from notifier.openssl_hmac import keyed


class TokenError(ValueError):
    """The link is broken, forged or expired; the message is fit to show to a reader."""


class TokenExpired(TokenError):
    """The link was ours and good, but is older than its purpose allows (a 410, not a 404)."""


def address_digest(secret_key: str, email: str) -> str:
    """Binds a link to an address without putting the address (or a guessable hash of it)
    in URLs and logs: keyed, so nobody without SECRET_KEY can test guesses against it."""
    return hmac.new(secret_key.encode(), email.encode(), hashlib.sha256).hexdigest()[:24]


@dataclass(frozen=True)
class ConfirmRequest:
    subscriber_id: int
    email_digest: str
    category_ids: tuple[int, ...]
    secret_keys: tuple[str, ...] = field(repr=False, compare=False, default=())
    issued_at: datetime = field(compare=False, default=datetime.min.replace(tzinfo=UTC))

    def is_for(self, email: str) -> bool:
        return _digest_matches(self.email_digest, self.secret_keys, email)


def _digest_matches(digest: str, secret_keys: tuple[str, ...], email: str) -> bool:
    """The digest was made for this address with the current key or a fallback one."""
    return any(
        hmac.compare_digest(digest, address_digest(key, email)) for key in reversed(secret_keys)
    )


@dataclass(frozen=True)
class UnsubscribeRequest:
    subscriber_id: int
    category_ids: tuple[int, ...]


@dataclass(frozen=True)
class ResubscribeRequest:
    """Put back the categories an unsubscribe dropped; made by the page that confirmed it."""

    subscriber_id: int
    category_ids: tuple[int, ...]
    issued_at: datetime


@dataclass(frozen=True)
class EmailView:
    """One notification email as every reader of these categories got it: the web version's
    link names the notice and the matched categories, and no reader."""

    kind: str  # "article" or "alert"
    notice_id: int
    category_ids: tuple[int, ...]


@dataclass(frozen=True)
class CadenceSwitch:
    """One click in a digest: this reader's categories of this digest go to `cadence`."""

    subscriber_id: int
    digest_id: int
    cadence: str


# itsdangerous's compact JSON (json.dumps with these arguments), with the encoder made once.
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


def _base64(data: bytes) -> bytes:
    """itsdangerous's base64_encode (URL-safe, no padding) of bytes, in C calls only."""
    return binascii.b2a_base64(data, newline=False).translate(_URL_SAFE).rstrip(b"=")


class _Uncompressed(URLSafeSerializer):
    """Signs without trying zlib first (our payloads are a few ids, which never compress;
    the attempt cost 60 µs a link, two links per email at fan-out), with the signing key
    derived once, not per link, and with HMAC-SHA1 from a keyed OpenSSL HMAC copied per link
    (itsdangerous's goes through hmac.new with a Python digest wrapper: several µs a link;
    hmac.digest sets the key up again every call). Same tokens
    otherwise; reading still accepts compressed ones, so links already sent keep working."""

    def __init__(self, secret_keys: list[str], salt: str) -> None:
        super().__init__(secret_keys, salt=salt)  # signs with the last, reads with any
        signer = self.make_signer()
        self._key, self._algorithm, self._sep = signer.derive_key(), signer.algorithm, signer.sep
        probe = b"notifier"  # the one-shot HMAC only where it signs exactly as itsdangerous
        self._sha1 = hmac.digest(self._key, probe, "sha1") == self._algorithm.get_signature(
            self._key, probe
        )
        # Copying a keyed HMAC and feeding it the payload costs about half of hmac.digest's
        # 4 µs a link (which sets up the key and looks up SHA-1 in OpenSSL every call).
        self._keyed = keyed(self._key, "sha1") if self._sha1 else None

    def dump_payload(self, obj) -> bytes:
        if self.serializer_kwargs:
            return base64_encode(self.serializer.dumps(obj, **self.serializer_kwargs).encode())
        return _base64(_COMPACT_JSON.encode(obj).encode())

    def dumps(self, obj, salt=None) -> str:
        if salt is not None:
            return super().dumps(obj, salt)
        return self._signed(self.dump_payload(obj))

    def dumps_json(self, compact_json: str) -> str:
        """dumps() of the object whose compact JSON this is: for the fan-out's links, whose
        few integers are cheaper to format than to encode (about 1 µs a link)."""
        return self._signed(_base64(compact_json.encode()))

    def _signed(self, payload: bytes) -> str:
        if self._keyed is not None:
            mac = self._keyed.copy()
            mac.update(payload)
            signature = _base64(mac.digest())
        elif self._sha1:
            signature = _base64(hmac.digest(self._key, payload, "sha1"))
        else:
            signature = base64_encode(self._algorithm.get_signature(self._key, payload))
        return (payload + self._sep + signature).decode()


class Tokens:
    """Links are signed with SECRET_KEY and read with it or any of SECRET_KEY_FALLBACKS, so
    links in emails already sent keep working while a new key is rolled out."""

    def __init__(
        self, secret_key: str, confirm_max_age_seconds: int, fallback_keys: tuple[str, ...] = ()
    ) -> None:
        keys = [*fallback_keys, secret_key]
        self._confirm = URLSafeTimedSerializer(keys, salt="notifier.confirm")
        self._manage = _Uncompressed(keys, salt="notifier.manage")
        self._unsubscribe = _Uncompressed(keys, salt="notifier.unsubscribe")
        self._push = _Uncompressed(keys, salt="notifier.push-manage")
        self._device = URLSafeTimedSerializer(keys, salt="notifier.login-device")
        self._resubscribe = URLSafeTimedSerializer(keys, salt="notifier.resubscribe")
        self._email_view = _Uncompressed(keys, salt="notifier.email-view")
        # Issued-at in the payload, not itsdangerous's timed signer: the fast signer stays
        # (three such links per digest, 100,000 digests at once), and they still expire.
        self._cadence_switch = _Uncompressed(keys, salt="notifier.cadence-switch")
        self._digest_view = _Uncompressed(keys, salt="notifier.digest-view")
        self._confirm_max_age = confirm_max_age_seconds
        self._secret_key = secret_key
        self._secret_keys = tuple(keys)

    def confirm_token(self, subscriber_id: int, email: str, category_ids: list[int]) -> str:
        payload = {
            "s": subscriber_id,
            "e": address_digest(self._secret_key, email),
            "c": sorted(category_ids),
        }
        return self._confirm.dumps(payload)

    def read_confirm_token(self, token: str) -> ConfirmRequest:
        try:
            data, issued_at = self._confirm.loads(
                token, max_age=self._confirm_max_age, return_timestamp=True
            )
        except SignatureExpired:
            raise TokenError(
                "This confirmation link has expired. Subscribe again to get a new one."
            ) from None
        except BadSignature:
            raise TokenError("This confirmation link is not valid.") from None
        try:
            categories = tuple(int(c) for c in data["c"])
            subscriber_id, digest = int(data["s"]), str(data["e"])
        except (KeyError, TypeError, ValueError):
            raise TokenError("This confirmation link is not valid.") from None
        return ConfirmRequest(subscriber_id, digest, categories, self._secret_keys, issued_at)

    def manage_token(self, subscriber_id: int) -> str:
        return self._manage.dumps_json(f'{{"s":{subscriber_id:d}}}')  # {"s": subscriber_id}

    def read_manage_token(self, token: str) -> int:
        try:
            return int(self._manage.loads(token)["s"])
        except (BadSignature, KeyError, TypeError, ValueError):
            raise TokenError("This link is not valid.") from None

    def unsubscribe_token(self, subscriber_id: int, category_ids: list[int]) -> str:
        categories = ",".join([f"{c:d}" for c in sorted(category_ids)])
        # {"s": subscriber_id, "c": sorted(category_ids)}
        return self._unsubscribe.dumps_json(f'{{"s":{subscriber_id:d},"c":[{categories}]}}')

    def read_unsubscribe_token(self, token: str) -> UnsubscribeRequest:
        try:
            data = self._unsubscribe.loads(token)
            return UnsubscribeRequest(int(data["s"]), tuple(int(c) for c in data["c"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            raise TokenError("This unsubscribe link is not valid.") from None

    def resubscribe_token(self, subscriber_id: int, category_ids: list[int]) -> str:
        return self._resubscribe.dumps({"s": subscriber_id, "c": sorted(category_ids)})

    def read_resubscribe_token(self, token: str, max_age_seconds: int) -> ResubscribeRequest:
        try:
            data, issued_at = self._resubscribe.loads(
                token, max_age=max_age_seconds, return_timestamp=True
            )
            return ResubscribeRequest(int(data["s"]), tuple(int(c) for c in data["c"]), issued_at)
        except SignatureExpired:
            raise TokenError(
                "This page is too old to resubscribe from. Subscribe again from the start page."
            ) from None
        except (BadSignature, KeyError, TypeError, ValueError):
            raise TokenError("This resubscribe link is not valid.") from None

    def email_view_token(self, kind: str, notice_id: int, category_ids: list[int]) -> str:
        return self._email_view.dumps({"k": kind, "n": notice_id, "c": sorted(category_ids)})

    def read_email_view_token(self, token: str) -> EmailView:
        try:
            data = self._email_view.loads(token)
            view = EmailView(str(data["k"]), int(data["n"]), tuple(int(c) for c in data["c"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            raise TokenError("This link is not valid.") from None
        if view.kind not in ("article", "alert"):
            raise TokenError("This link is not valid.")
        return view

    def cadence_switch_token(
        self, subscriber_id: int, digest_id: int, cadence: str, issued: datetime
    ) -> str:
        payload = {"s": subscriber_id, "d": digest_id, "c": cadence, "i": int(issued.timestamp())}
        return self._cadence_switch.dumps(payload)

    def read_cadence_switch_token(
        self, token: str, max_age_seconds: int, now: datetime
    ) -> CadenceSwitch:
        data = _read_issued(self._cadence_switch, token, max_age_seconds, now,
                            "This link to change your digest is")  # fmt: skip
        try:
            switch = CadenceSwitch(int(data["s"]), int(data["d"]), str(data["c"]))
        except (KeyError, TypeError, ValueError):
            raise TokenError("This link to change your digest is not valid.") from None
        if switch.cadence not in ("instant", "daily", "weekly"):
            raise TokenError("This link to change your digest is not valid.")
        return switch

    def digest_view_token(self, digest_id: int, issued: datetime) -> str:
        return self._digest_view.dumps({"d": digest_id, "i": int(issued.timestamp())})

    def read_digest_view_token(self, token: str, max_age_seconds: int, now: datetime) -> int:
        """The digest the web-version link names."""
        data = _read_issued(self._digest_view, token, max_age_seconds, now,
                            "This link to a digest is")  # fmt: skip
        try:
            return int(data["d"])
        except (KeyError, TypeError, ValueError):
            raise TokenError("This link to a digest is not valid.") from None

    def push_manage_token(self, push_subscription_id: int) -> str:
        return self._push.dumps_json(f'{{"p":{push_subscription_id:d}}}')  # {"p": id}

    def read_push_manage_token(self, token: str) -> int:
        try:
            return int(self._push.loads(token)["p"])
        except (BadSignature, KeyError, TypeError, ValueError):
            raise TokenError("This link is not valid.") from None

    def device_token(self, email: str, device_id: str) -> str:
        """Marks a browser an editor logged in from (see domain.editors.authenticate)."""
        return self._device.dumps({"d": device_id, "e": address_digest(self._secret_key, email)})

    def read_device_token(self, token: str, email: str, max_age_seconds: int) -> str | None:
        """The browser's device id if it logged in to this address before, else None."""
        try:
            data = self._device.loads(token, max_age=max_age_seconds)
            device_id, digest = str(data["d"]), str(data["e"])
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        if not _digest_matches(digest, self._secret_keys, email):
            return None
        return device_id


def _read_issued(
    serializer: URLSafeSerializer, token: str, max_age_seconds: int, now: datetime, what: str
) -> dict:
    """A signed payload with its issue time ("i", Unix seconds), refused once older than
    `max_age_seconds` (TokenExpired) and when forged or broken (TokenError)."""
    try:
        data = serializer.loads(token)
        issued = datetime.fromtimestamp(int(data["i"]), UTC)
    except (BadSignature, KeyError, TypeError, ValueError, OverflowError, OSError):
        raise TokenError(f"{what} not valid.") from None
    if not isinstance(data, dict):
        raise TokenError(f"{what} not valid.")
    if (now - issued).total_seconds() > max_age_seconds:
        raise TokenExpired(f"{what} too old: it worked for {max_age_seconds // 86400} days.")
    return data


class BounceAddresses:
    """The per-delivery envelope sender (VERP): `bounces+<delivery>.<signature>@BOUNCE_DOMAIN`.

    A returned message is addressed to it, so it names its delivery without our guessing
    from its text, and nobody can forge one for a delivery they did not receive. The local
    part is lowercase letters and digits (base36 id, base32 signature): mail servers may
    change the case of a local part, and RFC 5321 allows 64 characters at most."""

    PREFIX = "bounces+"
    _SIGNATURE_CHARS = 16  # 80 bits

    def __init__(self, domain: str, secret_key: str, fallback_keys: tuple[str, ...] = ()) -> None:
        self.domain = domain.lower()
        self._keys = [_bounce_key(key) for key in (secret_key, *fallback_keys)]

    def address(self, delivery_id: int) -> str:
        token = f"{_base36(delivery_id)}.{self._signature(self._keys[0], delivery_id)}"
        return f"{self.PREFIX}{token}@{self.domain}"

    def delivery_id(self, address: str) -> int:
        """The delivery a bounce address names; TokenError when it is not one of ours."""
        local, _, domain = address.strip().strip("<>").lower().rpartition("@")
        if domain != self.domain or not local.startswith(self.PREFIX):
            raise TokenError("not a bounce address of ours")
        number, _, signature = local[len(self.PREFIX) :].partition(".")
        try:
            delivery_id = int(number, 36)
        except ValueError:
            raise TokenError("not a bounce address of ours") from None
        if not any(
            hmac.compare_digest(signature, self._signature(key, delivery_id)) for key in self._keys
        ):
            raise TokenError("the bounce address is forged or from another key")
        return delivery_id

    def _signature(self, key: bytes, delivery_id: int) -> str:
        digest = hmac.new(key, str(delivery_id).encode(), hashlib.sha256).digest()
        return base64.b32encode(digest).decode().lower()[: self._SIGNATURE_CHARS]


def _bounce_key(secret_key: str) -> bytes:
    """A key of its own for bounce addresses, derived the way itsdangerous derives its keys
    (salted), so a bounce signature is never valid as any other token's."""
    return URLSafeSerializer(secret_key, salt="notifier.bounce").make_signer().derive_key()


def _base36(number: int) -> str:
    if number < 0:
        raise ValueError("a delivery id is never negative")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, digit = divmod(number, 36)
        text = digits[digit] + text
        if not number:
            return text
