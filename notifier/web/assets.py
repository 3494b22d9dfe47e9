"""Served from fixed paths: the service worker (scope /), the site's widget, /favicon.ico and
/brand.css (the accent colour from settings, as a style sheet: pages allow no inline style)."""

from __future__ import annotations

import hashlib
import struct
from functools import cache
from pathlib import Path

from flask import Blueprint, Response, current_app, send_from_directory

from notifier.web.context import settings

bp = Blueprint("assets", __name__)


def _static_folder() -> str:
    folder = current_app.static_folder
    if folder is None:
        raise RuntimeError("create_app gives the app a static folder; this one has none")
    return folder


def _script(name: str, **headers: str):
    response = send_from_directory(_static_folder(), name, max_age=0)
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


ICON = "icon-192.png"


@cache
def ico_from_png(path: Path) -> bytes:
    """An .ico holding the site's PNG icon as it is (ICO allows PNG entries): one image, no
    second copy to keep in step."""
    png = path.read_bytes()
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    header = struct.pack("<HHH", 0, 1, 1)  # reserved, type 1 = icon, one image
    entry = struct.pack("<BBBBHHII", width % 256, height % 256, 0, 0, 1, 32, len(png), 6 + 16)
    return header + entry + png


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for it on every page that names no icon (JSON, the raw mail source)."""
    body = ico_from_png(Path(_static_folder()) / ICON)
    return Response(body, content_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})


def brand_css_text(accent: str) -> str:
    return f":root {{ --accent: {accent}; }}\n"


def brand_css_version(accent: str) -> str:
    """Part of the style sheet's URL: a new colour is a new URL, so it can be cached long."""
    return hashlib.sha256(brand_css_text(accent).encode()).hexdigest()[:12]


@bp.get("/brand.css")
def brand_css():
    body = brand_css_text(settings().site_accent_color)
    return Response(body, content_type="text/css; charset=utf-8",
                    headers={"Cache-Control": "max-age=86400"})  # fmt: skip
