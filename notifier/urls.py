"""Absolute public URLs, built without a Flask request so workers can put them in messages."""

from __future__ import annotations

from datetime import datetime

from notifier.tokens import Tokens


class PublicUrls:
    def __init__(self, public_url: str, tokens: Tokens) -> None:
        self.base = public_url.rstrip("/")
        self.tokens = tokens

    def home(self) -> str:
        return f"{self.base}/"

    def confirm(self, subscriber_id: int, email: str, category_ids: list[int]) -> str:
        return (
            f"{self.base}/confirm/{self.tokens.confirm_token(subscriber_id, email, category_ids)}"
        )

    def manage(self, subscriber_id: int) -> str:
        return f"{self.base}/preferences/{self.tokens.manage_token(subscriber_id)}"

    def unsubscribe(self, subscriber_id: int, category_ids: list[int]) -> str:
        token = self.tokens.unsubscribe_token(subscriber_id, category_ids)
        return f"{self.base}/unsubscribe/{token}"

    def manage_page(self) -> str:
        """Where anyone asks for a link to their preferences (no token: for web versions)."""
        return f"{self.base}/manage"

    def email_view(self, kind: str, notice_id: int, category_ids: list[int]) -> str:
        """The read-only web version of a notification email: the same for every reader who
        matched these categories, so it tells nobody who opened it."""
        return f"{self.base}/email/{self.tokens.email_view_token(kind, notice_id, category_ids)}"

    def digest_view(self, digest_id: int, issued: datetime) -> str:
        """A digest as a web page ("view in browser"); expires (DIGEST_LINK_MAX_AGE_SECONDS)."""
        return f"{self.base}/digest/{self.tokens.digest_view_token(digest_id, issued)}"

    def cadence_switch(self, subscriber_id: int, digest_id: int, cadence: str,
                       issued: datetime) -> str:  # fmt: skip
        """One click from a digest: its categories to `cadence` (a page whose button does it)."""
        token = self.tokens.cadence_switch_token(subscriber_id, digest_id, cadence, issued)
        return f"{self.base}/digest/switch/{token}"

    def push_manage(self, push_subscription_id: int) -> str:
        return f"{self.base}/push/manage/{self.tokens.push_manage_token(push_subscription_id)}"
