"""Who may call the API from a browser: our own pages and the origins in CORS_ALLOWED_ORIGINS.

CORS headers tell browsers; the Origin check makes the server itself refuse other sites'
pages, which CORS alone does not (a simple POST would still be processed).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, jsonify, request
from flask_cors import CORS

from notifier.config import Settings


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def protect_api(app: Flask, settings: Settings) -> None:
    allowed = {_origin(settings.public_url), *settings.cors_allowed_origins}
    CORS(
        app,
        resources={r"/api/*": {"origins": sorted(allowed)}},
        methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type"],
        max_age=86400,
    )

    @app.before_request
    def refuse_other_origins():
        origin = request.headers.get("Origin")
        if request.path.startswith("/api/") and origin and origin not in allowed:
            return jsonify(error=f"Pages on {origin} may not use this API."), 403
        return None
