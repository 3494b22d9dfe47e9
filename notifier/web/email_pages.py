"""The web version of a notification email ("View this email in your browser"): read-only,
the same page for every reader who got it, so opening it tells us nothing about anyone."""

from __future__ import annotations

from flask import Blueprint, make_response

from notifier.tokens import TokenError
from notifier.web.context import composer, db, tokens
from notifier.web.public import message_page
from notifier.web.security_headers import allow_inline_styles

bp = Blueprint("email_pages", __name__)


@bp.errorhandler(TokenError)
def bad_link(error: TokenError):
    return message_page("This link does not work", str(error), 400)


@bp.get("/email/<token>")
def web_version(token: str):
    rendered = composer().web_version(db(), tokens().read_email_view_token(token))
    if rendered is None:
        return message_page(
            "This email is no longer here", "The article or alert it was about was removed.", 404
        )
    allow_inline_styles()  # an email's styles are inline (mail clients drop style sheets)
    response = make_response(rendered.html)
    response.headers["X-Robots-Tag"] = "noindex"  # one reader's forward is not for search
    return response
