"""Development-only pages (registered when NOTIFIER_DEV is set): the mailbox and a sample feed.

The mailbox list checks for new mail by itself (static/dev-mailbox.js polls `/dev/mailbox/state`
every DEV_MAILBOX_POLL_SECONDS); a message shows its HTML with links that open in a new tab
(never inside the small preview frame), its plain text, every header and its raw source.
"""

from __future__ import annotations

import hashlib
import mailbox
import re
from email import message_from_bytes, policy
from email.message import EmailMessage

from flask import Blueprint, Response, abort, jsonify, render_template, send_file

from notifier.sample_feed import ensure_sample_feed
from notifier.web.context import settings
from notifier.web.security_headers import allow_inline_styles

bp = Blueprint("dev", __name__, url_prefix="/dev")
_ANCHOR = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_TARGET = re.compile(r"""\starget\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""", re.IGNORECASE)


def _box() -> mailbox.Maildir:
    return mailbox.Maildir(settings().dev_mailbox_dir, factory=None, create=True)


def _parsed(raw: mailbox.MaildirMessage) -> EmailMessage:
    return message_from_bytes(raw.as_bytes(), policy=policy.default)


def _part(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    return part.get_content() if part is not None else ""


def links_open_outside(html: str) -> str:
    """Every link of the previewed email opens in a new tab: clicked inside the preview frame
    it would otherwise load the whole site into that small frame."""

    def retarget(match: re.Match[str]) -> str:
        tag = _TARGET.sub("", match.group(0))
        return '<a target="_blank" rel="noopener"' + tag[2:]

    return _ANCHOR.sub(retarget, html)


def _keys() -> list[str]:
    return sorted(_box().keys())


@bp.get("/mailbox")
def mailbox_index():
    box = _box()
    rows = []
    for key, raw in box.items():
        message = _parsed(raw)
        rows.append({"key": key, "to": message["To"], "subject": message["Subject"],
                     "date": message["Date"], "time": raw.get_date()})  # fmt: skip
    rows.sort(key=lambda row: row["time"], reverse=True)
    return render_template(
        "pages/dev_mailbox.html", messages=rows, state=_state(sorted(r["key"] for r in rows)),
        poll_ms=int(settings().dev_mailbox_poll_seconds * 1000),
    )  # fmt: skip


def _state(keys: list[str]) -> str:
    """Changes whenever a message arrives or goes: what the list page compares."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


@bp.get("/mailbox/state")
def mailbox_state():
    keys = _keys()
    return jsonify(state=_state(keys), count=len(keys))


def _message(key: str) -> mailbox.MaildirMessage:
    try:
        return _box()[key]
    except (KeyError, ValueError):
        abort(404, "No such message in the development mailbox.")


@bp.get("/mailbox/<key>")
def mailbox_message(key: str):
    message = _parsed(_message(key))
    allow_inline_styles()  # the message's HTML part, in a sandboxed iframe
    return render_template(
        "pages/dev_message.html", key=key, headers=list(message.items()),
        subject=message["Subject"], text=_part(message, "plain"),
        html=links_open_outside(_part(message, "html")),
    )  # fmt: skip


@bp.get("/mailbox/<key>/source")
def mailbox_source(key: str):
    """The message as stored, headers and encoded parts, as a mail server would get it."""
    raw = _message(key).as_bytes()
    return Response(raw, content_type="text/plain; charset=utf-8")


@bp.get("/sample-feed.xml")
def sample_feed():
    path = ensure_sample_feed(settings().sample_feed_path)
    return send_file(path, mimetype="application/rss+xml", conditional=True, etag=True)
