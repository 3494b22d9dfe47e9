"""Request-time access to what the app factory built, without globals in views."""

from __future__ import annotations

from flask import current_app
from sqlalchemy.orm import Session

from notifier.config import Settings
from notifier.delivery.compose import Composer
from notifier.task_queue import TaskQueue
from notifier.tokens import Tokens
from notifier.urls import PublicUrls


def _parts() -> dict:
    return current_app.extensions["notifier"]


def db() -> Session:
    return _parts()["db"]()


def settings() -> Settings:
    return _parts()["settings"]


def queue() -> TaskQueue:
    return _parts()["queue"]


def tokens() -> Tokens:
    return _parts()["tokens"]


def composer() -> Composer:
    return _parts()["composer"]


def urls() -> PublicUrls:
    return composer().urls


def utf8_local_parts_ok(raw_email: object) -> bool:
    """False only when `raw_email` has a non-ASCII local part and the mail server is known
    not to offer SMTPUTF8 (the dev mailbox takes anything; an unreachable server is asked
    again later, and the confirmation is retried meanwhile)."""
    smtp_url = settings().smtp_url
    if not isinstance(raw_email, str) or raw_email.isascii() or not smtp_url:
        return True
    from notifier.channels.smtp import SmtpChannel, offers_smtputf8

    channel = SmtpChannel(smtp_url, min(settings().smtp_timeout_seconds, 5.0))
    return offers_smtputf8(channel, settings().smtputf8_check_seconds) is not False
