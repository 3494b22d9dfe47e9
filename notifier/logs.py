"""Logging for every process: one JSON object per line (or text for people), no addresses.

`configure_logging` sets up the root logger once per process (web, worker, beat, dev);
gunicorn and Celery are pointed at the same handler instead of installing their own.
Email addresses and push endpoints never reach a log in clear: a filter on the handler
masks them in every message and traceback, whoever logged it.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import sys
from datetime import UTC, datetime
from fnmatch import fnmatch
from urllib.parse import urlsplit

from notifier.config import DEFAULT_PUSH_ORIGINS, Settings

# Ids a log record may carry (`log.info(..., extra={"delivery_id": 7})`); nothing else of a
# record's extras is written: Celery puts task arguments there, and arguments can be addresses.
CONTEXT_FIELDS = (
    "article_id",
    "alert_id",
    "delivery_id",
    "channel",
    "subscriber_id",
    "push_subscription_id",
    "task_id",
    "task_name",
)

# Local parts as people have them (not every RFC 5322 character: quotes, "=", "/" and
# brackets around an address in a log line stay outside the mask).
# Every pattern here runs on text anyone can send (a User-Agent, a feed title), so each runs
# in linear time: a match only starts where a run of its characters starts (the lookbehind),
# and runs are taken whole, never given back (possessive quantifiers). Without that, 8 KB of
# word characters cost the web worker 0.4 s, 40 KB 10 s.
_LOCAL = r"[\w.!#$%*+^`~-]"
_EMAIL = re.compile(rf"(?<!{_LOCAL})(?:[\w.!#$*+^`~-]|%(?!40))++(?:@|%40)[\w-]++(?:\.[\w-]++)++")
_URL = re.compile(r"\bhttps?://[^\s/?#'\"<>]++[^\s'\"<>]*+")
# Paths that are push endpoints whatever the host (FCM, Mozilla, WNS, generic servers).
_PUSH_PATH = re.compile(r"^/(?:fcm/send|wpush|push|w)(?:/|\?)")
# requests names host and path apart in its errors: "HTTPSConnectionPool(host='fcm.
# googleapis.com', port=443): Max retries exceeded with url: /fcm/send/TOKEN (Caused by …)".
_REQUESTS_ERROR = re.compile(
    r"(HTTPS?)ConnectionPool\(host='([^']{1,300})'([^\n]{0,200}?) with url: (/\S*+)"
)
# Our own links carry signed tokens that act as keys (one-click unsubscribe, confirm,
# preferences, push manage): an access log line must not hand them to whoever reads it.
# Signed links, and the secret Postmark's webhook URL may carry in its path.
_TOKEN_PATH = re.compile(
    r"/(unsubscribe|confirm|preferences|push/manage|webhooks/bounces/postmark)/[A-Za-z0-9._-]+"
)
EMAIL_MASK = "<email>"
PATH_MASK = "/<redacted>"


class Redactor:
    """Masks email addresses and the paths (the secret part) of push endpoint URLs."""

    def __init__(self, push_origins: tuple[str, ...] | list[str] = DEFAULT_PUSH_ORIGINS) -> None:
        origins = (*DEFAULT_PUSH_ORIGINS, *push_origins)  # the known ones stay masked always
        self.push_origins = tuple(dict.fromkeys(o.rstrip("/").lower() for o in origins))

    def _is_push_url(self, origin: str, path: str) -> bool:
        origin = origin.lower()
        return bool(_PUSH_PATH.match(path)) or any(fnmatch(origin, o) for o in self.push_origins)

    def _mask_url(self, match: re.Match) -> str:
        url = match.group(0)
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        path = url[len(origin) :]
        if path.strip("/") and self._is_push_url(origin, path):
            return origin + PATH_MASK
        return url

    def _mask_requests_error(self, match: re.Match) -> str:
        scheme, host, middle, path = match.groups()
        if not self._is_push_url(f"{scheme.lower()}://{host}", path):
            return match.group(0)
        return f"{scheme}ConnectionPool(host='{host}'{middle} with url: {PATH_MASK}"

    def __call__(self, text: str) -> str:
        text = _URL.sub(self._mask_url, text)
        text = _REQUESTS_ERROR.sub(self._mask_requests_error, text)
        text = _TOKEN_PATH.sub(r"/\1/<token>", text)
        return _EMAIL.sub(_mask_email, text)


def _mask_email(match: re.Match) -> str:
    """An address ends with a top-level domain of two or more letters ("a@b.com", not
    "a@b.c"); what follows that label ("a@example.com_x" has none) stays as it is."""
    found = match.group(0)
    labels = found.split(".")
    for last in range(len(labels) - 1, 0, -1):
        if len(labels[last]) >= 2 and labels[last].isascii() and labels[last].isalpha():
            if "@" in ".".join(labels[:last]) or "%40" in ".".join(labels[:last]):
                return EMAIL_MASK + found[len(".".join(labels[: last + 1])) :]
            break
    return found


redact = Redactor()


class RedactingFilter(logging.Filter):
    """Put on a handler: the record's message is formatted, masked and frozen before any
    formatter sees it, so no argument can bring an address back."""

    def __init__(self, push_origins: tuple[str, ...] | list[str] = DEFAULT_PUSH_ORIGINS) -> None:
        super().__init__()
        self.redact = Redactor(push_origins)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string must not raise into the caller
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class TaskContextFilter(logging.Filter):
    """Adds task_id/task_name to records logged while a Celery task runs, and to Celery's own
    "received"/"succeeded" lines, which carry them in `data`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "task_id", None):
            return True
        data = getattr(record, "data", None)
        if record.name.startswith("celery") and isinstance(data, dict) and data.get("id"):
            record.task_id, record.task_name = data["id"], data.get("name")
            return True
        if "celery" in sys.modules:  # a process without Celery does not import it for this
            from celery import current_task

            request_id = getattr(getattr(current_task, "request", None), "id", None)
            if request_id:
                record.task_id, record.task_name = request_id, current_task.name
        return True


def _context(record: logging.LogRecord) -> dict[str, object]:
    return {
        name: getattr(record, name)
        for name in CONTEXT_FIELDS
        if getattr(record, name, None) is not None
    }


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, process, the ids present, and the traceback if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            **_context(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """For a terminal: time, level, process, logger, message, then the ids as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = " ".join(f"{key}={value}" for key, value in _context(record).items())
        if not context:
            return text
        first, newline, rest = text.partition("\n")
        return f"{first} [{context}]{newline}{rest}"


def logging_config(settings: Settings, stream: str = "ext://sys.stderr") -> dict:
    """A logging.config.dictConfig dictionary: one handler on the root logger."""
    formatter = JsonFormatter if settings.log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"notifier": {"()": f"{__name__}.{formatter.__name__}"}},
        "filters": {
            "task_context": {"()": f"{__name__}.TaskContextFilter"},
            "redact": {
                "()": f"{__name__}.RedactingFilter",
                "push_origins": list(settings.push_allowed_origins),
            },
        },
        "handlers": {
            "notifier": {
                "class": "logging.StreamHandler",
                "stream": stream,
                "formatter": "notifier",
                "filters": ["task_context", "redact"],
            }
        },
        "root": {"level": settings.log_level, "handlers": ["notifier"]},
        "loggers": {
            # billiard (Celery's pool) logs pool children that die here, without propagating.
            "multiprocessing": {"level": "WARNING", "handlers": ["notifier"], "propagate": False},
        },
    }


def gunicorn_logconfig(settings: Settings) -> dict:
    """gunicorn's `logconfig_dict`: its error and access logs go through our root handler."""
    config = logging_config(settings)
    for name in ("gunicorn.error", "gunicorn.access"):
        config["loggers"][name] = {"level": "INFO", "handlers": [], "propagate": True}
    return config


def configure_logging(settings: Settings) -> None:
    """Replace the root logger's handlers with ours; safe to call again."""
    logging.config.dictConfig(logging_config(settings))
    logging.captureWarnings(True)


_celery_hooked: list[Settings] = []


def configure_celery_logging(settings: Settings) -> None:
    """Before a worker or beat starts: answering Celery's setup_logging signal stops Celery
    from installing its own handlers (and from redirecting stdout into the log)."""
    configure_logging(settings)
    if _celery_hooked:
        _celery_hooked[0] = settings
        return
    from celery.signals import setup_logging

    _celery_hooked.append(settings)

    @setup_logging.connect(weak=False)
    def use_ours(**_kwargs) -> None:
        configure_logging(_celery_hooked[0])
