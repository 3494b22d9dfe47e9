"""Request-time access to what the app factory built, without globals in views."""

from __future__ import annotations

from flask import current_app
from sqlalchemy.orm import Session

from notifier.compose import Composer
from notifier.config import Settings
from notifier.queue import TaskQueue
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
