"""What every page template may use: times in SITE_TIMEZONE, plural-correct counts, the
site's name and brand (logo, footer) and the logged-in editor (for the workspace
navigation)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import Flask
from markupsafe import Markup, escape

from notifier.branding import Brand
from notifier.config import Settings
from notifier.local_time import local_time
from notifier.ops.deliverability import percent
from notifier.wording import plural


def install(app: Flask, settings: Settings) -> None:
    zone = ZoneInfo(settings.site_timezone)

    def when(moment: datetime | None, missing: str = "—") -> Markup:
        """`<time datetime="…Z">4 Dec 2026, 09:00 Asia/Baku</time>`, kept on one line."""
        if moment is None:
            return Markup(escape(missing))
        utc = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
        text = escape(local_time(utc, zone))
        return Markup(f'<time datetime="{utc.isoformat()}" class="when">{text}</time>')

    from notifier.web.assets import brand_css_version
    from notifier.web.auth import current_editor

    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["plural"] = plural
    app.jinja_env.filters["percent"] = percent
    app.jinja_env.globals.update(
        site_name=settings.site_name, site_timezone=settings.site_timezone,
        current_editor=current_editor, brand=Brand.of(settings),
        brand_css_version=brand_css_version(settings.site_accent_color),
    )  # fmt: skip
