"""Development-only pages (registered when NOTIFIER_DEV is set): the mailbox and a sample feed."""

from __future__ import annotations

import mailbox
from email import message_from_bytes, policy
from email.message import EmailMessage

from flask import Blueprint, abort, render_template, send_file

from notifier.sample_feed import ensure_sample_feed
from notifier.web.context import settings
from notifier.web.security_headers import allow_inline_styles

bp = Blueprint("dev", __name__, url_prefix="/dev")


def _box() -> mailbox.Maildir:
    return mailbox.Maildir(settings().dev_mailbox_dir, factory=None, create=True)


def _parsed(raw: mailbox.MaildirMessage) -> EmailMessage:
    return message_from_bytes(raw.as_bytes(), policy=policy.default)


def _part(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    return part.get_content() if part is not None else ""


@bp.get("/mailbox")
def mailbox_index():
    box = _box()
    rows = []
    for key, raw in box.items():
        message = _parsed(raw)
        rows.append({"key": key, "to": message["To"], "subject": message["Subject"],
                     "date": message["Date"], "time": raw.get_date()})  # fmt: skip
    rows.sort(key=lambda row: row["time"], reverse=True)
    return render_template("pages/dev_mailbox.html", messages=rows)


@bp.get("/mailbox/<key>")
def mailbox_message(key: str):
    try:
        message = _parsed(_box()[key])
    except KeyError:
        abort(404, "No such message in the development mailbox.")
    allow_inline_styles()  # the message's HTML part, in a sandboxed iframe
    return render_template(
        "pages/dev_message.html", key=key, headers=list(message.items()),
        text=_part(message, "plain"), html=_part(message, "html"),
    )  # fmt: skip


@bp.get("/sample-feed.xml")
def sample_feed():
    path = ensure_sample_feed(settings().sample_feed_path)
    return send_file(path, mimetype="application/rss+xml", conditional=True, etag=True)
