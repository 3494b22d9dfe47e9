"""Response headers that keep every page of ours from being framed, sniffed or scripted.

The Content-Security-Policy allows scripts and styles from our own origin only: no inline
script, style or event handler anywhere (they live in static/). The one exception is an
email preview: emails carry inline styles (mail clients ignore style sheets), and an iframe's
srcdoc inherits the page's policy, so a page that shows one allows inline styles, never
scripts (the iframe is sandboxed too).
"""

from __future__ import annotations

from flask import Flask, Response, g

from notifier.config import Settings

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' https: data:",  # push previews show the article's image
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}
HSTS_SECONDS = 365 * 24 * 3600


def allow_inline_styles() -> None:
    """This response shows an email preview (see the module docstring)."""
    g.csp_inline_styles = True


def content_security_policy(inline_styles: bool = False) -> str:
    policy = dict(POLICY)
    if inline_styles:
        policy["style-src"] = "'self' 'unsafe-inline'"
    return "; ".join(f"{name} {value}" for name, value in policy.items())


def install(app: Flask, settings: Settings) -> None:
    https = settings.public_url.startswith("https://")

    @app.after_request
    def harden(response: Response) -> Response:
        headers = response.headers
        headers.setdefault(
            "Content-Security-Policy", content_security_policy(g.get("csp_inline_styles", False))
        )
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("X-Content-Type-Options", "nosniff")
        # Our URLs carry signed tokens (preferences, unsubscribe): never hand them to others.
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if https:
            headers.setdefault("Strict-Transport-Security", f"max-age={HSTS_SECONDS}")
        return response
