"""Absolute public URLs, built without a Flask request so workers can put them in messages."""

from __future__ import annotations

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

    def push_manage(self, push_subscription_id: int) -> str:
        return f"{self.base}/push/manage/{self.tokens.push_manage_token(push_subscription_id)}"
