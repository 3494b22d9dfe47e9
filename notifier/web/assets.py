"""Scripts served from fixed paths: the service worker (scope /) and the site's widget."""

from __future__ import annotations

from flask import Blueprint, current_app, send_from_directory

bp = Blueprint("assets", __name__)


def _script(name: str, **headers: str):
    response = send_from_directory(current_app.static_folder, name, max_age=0)
    response.headers["Content-Type"] = "text/javascript; charset=utf-8"
    response.headers["Cache-Control"] = "no-cache"  # a stale service worker outlives deploys
    response.headers.update(headers)
    return response


@bp.get("/sw.js")
def service_worker():
    return _script("sw.js", **{"Service-Worker-Allowed": "/"})


@bp.get("/widget.js")
def widget():
    return _script("widget.js", **{"Access-Control-Allow-Origin": "*"})
