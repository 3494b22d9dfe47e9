"""One typed Settings object, read from the environment once and passed explicitly."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it and says what is expected."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}.") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}.")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}.") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}.")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _origin_rates(env: Mapping[str, str], name: str) -> tuple[tuple[str, float], ...]:
    """`https://fcm.googleapis.com=1000,https://updates.push.services.mozilla.com=200`; an
    http:// origin too, as PUSH_ALLOWED_ORIGINS admits one (a local push service in tests)."""
    rates = []
    for part in _list(env, name):
        origin, equals, rate = part.rpartition("=")
        try:
            value = float(rate) if equals and origin.startswith(("https://", "http://")) else -1.0
        except ValueError:
            value = -1.0
        if value <= 0:
            raise ConfigError(
                f"{name} takes origin=rate pairs such as https://fcm.googleapis.com=1000 "
                f"(a positive number of pushes per second), got {part!r}."
            )
        rates.append((origin.rstrip("/"), value))
    return tuple(rates)


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
INTERNAL_NETWORKS = "127.0.0.1/32,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"


def _networks(env: Mapping[str, str], name: str, default: str) -> tuple[IpNetwork, ...]:
    raw = env.get(name, "").strip() or default
    try:
        return tuple(ipaddress.ip_network(part.strip()) for part in raw.split(",") if part.strip())
    except ValueError as error:
        raise ConfigError(f"{name} must list networks like 10.0.0.0/8: {error}.") from None


def _rate(env: Mapping[str, str], name: str, default: str) -> str:
    """A limit like '20 per hour' or '5/day' (the limits library's notation)."""
    from limits import parse_many

    raw = env.get(name, "").strip() or default
    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(f"{name} must read like '20 per hour' or '5/day', got {raw!r}.") from None
    return raw


def _kept_secret(path: Path, make: Callable[[], str]) -> str:
    """A generated secret kept in the data directory, so every process shares the same one.

    Created with O_EXCL: when web and worker start together, the first one wins and the
    other reads what it wrote.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(make())
    except FileExistsError:
        pass
    for _ in range(50):  # the winner may still be writing
        if text := path.read_text().strip():
            return text
        time.sleep(0.02)
    raise ConfigError(f"{path} is empty; delete it to have a new secret generated.")


def _secret_key(env: Mapping[str, str], data_dir: Path) -> str:
    if env.get("SECRET_KEY"):
        return env["SECRET_KEY"]
    return _kept_secret(data_dir / "secret_key", lambda: secrets.token_urlsafe(48))


def _vapid_keys(env: Mapping[str, str], data_dir: Path) -> tuple[str, str]:
    """VAPID_PRIVATE_KEY + VAPID_PUBLIC_KEY, or a pair generated once and kept."""
    private, public = env.get("VAPID_PRIVATE_KEY", ""), env.get("VAPID_PUBLIC_KEY", "")
    if private and public:
        return private.strip(), public.strip()
    if private or public:
        raise ConfigError("Set both VAPID_PRIVATE_KEY and VAPID_PUBLIC_KEY, or neither.")
    from notifier.vapid import generate_keypair

    kept = _kept_secret(data_dir / "vapid_keys", lambda: " ".join(generate_keypair()))
    private, _, public = kept.partition(" ")
    return private, public


def _redis_url(env: Mapping[str, str]) -> str | None:
    """REDIS_URL, or the broker's URL when the broker is Redis; None: no shared Redis."""
    url = env.get("REDIS_URL", "").strip()
    if url and not url.startswith(("redis://", "rediss://")):
        raise ConfigError(f"REDIS_URL must start with redis:// or rediss://, got {url!r}.")
    broker = env.get("CELERY_BROKER_URL", "")
    return url or (broker if broker.startswith(("redis://", "rediss://")) else None)


def _timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"SITE_TIMEZONE is not a known time zone: {name!r}.") from None
    return name


def _accent(env: Mapping[str, str]) -> str:
    from notifier.branding import accent_problem

    colour = env.get("SITE_ACCENT_COLOR", "").strip() or "#b91c1c"
    if problem := accent_problem(colour):
        raise ConfigError(f"SITE_ACCENT_COLOR {problem}.")
    return colour.lower()


def _web_url(env: Mapping[str, str], name: str, public_url: str, paths: bool = False) -> str:
    """An http(s) URL, or empty; with `paths`, "/static/logo.png" means one of ours."""
    value = env.get(name, "").strip()
    if paths and value.startswith("/") and not value.startswith("//"):
        return public_url + value
    parts = urlsplit(value)
    if value and (parts.scheme not in ("http", "https") or not parts.netloc or " " in value):
        where = " or a path on this site such as /static/logo.png" if paths else ""
        raise ConfigError(f"{name} must be an http(s) URL{where}, got {value!r}.")
    return value


LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip() or default
    for choice in choices:
        if choice.upper() == value.upper():
            return choice
    raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}.")


_DOMAIN = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\Z")


def _bounce_domain(env: Mapping[str, str]) -> str:
    raw = env.get("BOUNCE_DOMAIN", "").strip().lower().rstrip(".")
    if raw and not _DOMAIN.match(raw):
        raise ConfigError(
            f"BOUNCE_DOMAIN must be a domain name such as bounces.example.com, got {raw!r}."
        )
    return raw


_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_SELECTOR = re.compile(rf"({_LABEL}\.)*{_LABEL}\Z")


def _dkim(env: Mapping[str, str]) -> tuple[str, str, str]:
    """(domain, selector, private key as PEM text), or three empty strings: signing is off.
    DKIM_PRIVATE_KEY is the PEM text itself (newlines or \\n) or the path of a PEM file."""
    domain = env.get("DKIM_DOMAIN", "").strip().lower().rstrip(".")
    selector = env.get("DKIM_SELECTOR", "").strip().lower()
    raw = env.get("DKIM_PRIVATE_KEY", "").strip()
    if not (domain or selector or raw):
        return "", "", ""
    if not (domain and selector and raw):
        raise ConfigError("Set DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY together, or none.")
    if not _DOMAIN.match(domain):
        raise ConfigError(f"DKIM_DOMAIN must be a domain name such as example.com, got {domain!r}.")
    if not _SELECTOR.match(selector):
        raise ConfigError(f"DKIM_SELECTOR must be a DNS label such as news2025, got {selector!r}.")
    if raw.startswith("-----BEGIN"):
        pem = raw.replace("\\n", "\n")
    else:
        try:
            pem = Path(raw).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(
                f"DKIM_PRIVATE_KEY is neither PEM text nor a readable PEM file ({error})."
            ) from None
    problem = _dkim_key_problem(pem)
    if problem:
        raise ConfigError(f"DKIM_PRIVATE_KEY {problem}.")
    return domain, selector, pem


def _dkim_key_problem(pem: str) -> str | None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = serialization.load_pem_private_key(pem.encode("ascii", "replace"), password=None)
    except (ValueError, TypeError) as error:
        return f"is not an unencrypted PEM private key ({error})"
    if not isinstance(key, rsa.RSAPrivateKey):
        return "must be an RSA key (what every receiver verifies)"
    if key.key_size < 1024:
        return f"has {key.key_size} bits; receivers ignore RSA keys under 1024 bits (use 2048)"
    return None


def _sendgrid_key(env: Mapping[str, str]) -> str:
    raw = env.get("SENDGRID_WEBHOOK_PUBLIC_KEY", "").strip()
    if raw:
        from notifier.inbound.webhooks.sendgrid_key import public_key

        try:
            public_key(raw)
        except ValueError as problem:
            raise ConfigError(f"SENDGRID_WEBHOOK_PUBLIC_KEY {problem}.") from None
    return raw


def _host_pattern(env: Mapping[str, str], name: str) -> str:
    """A regular expression a whole host name must match (SNS's hosts by default)."""
    from notifier.inbound.webhooks.sns import DEFAULT_CERT_HOSTS

    raw = env.get(name, "").strip() or DEFAULT_CERT_HOSTS
    try:
        re.compile(raw)
    except re.error as error:
        raise ConfigError(f"{name} must be a regular expression for host names: {error}.") from None
    return raw


IMAP_SECURITY = ("ssl", "starttls", "plain")
_FOLDER = re.compile(r"[\x20-\x7e]{1,200}\Z")  # printable ASCII (no modified UTF-7 here)


def _imap(env: Mapping[str, str]) -> dict[str, Any]:
    """The bounce mailbox (notifier.inbound.imap_reader): IMAP_HOST empty turns it off."""
    security = _choice(env, "IMAP_SECURITY", "ssl", IMAP_SECURITY)
    values: dict[str, Any] = {
        "imap_host": env.get("IMAP_HOST", "").strip(),
        "imap_security": security,
        "imap_port": _int(env, "IMAP_PORT", 993 if security == "ssl" else 143, minimum=1),
        "imap_user": env.get("IMAP_USER", "").strip(),
        "imap_password": env.get("IMAP_PASSWORD", ""),
        "imap_folder": env.get("IMAP_FOLDER", "").strip() or "INBOX",
        "imap_processed_folder": env.get("IMAP_PROCESSED_FOLDER", "").strip()
        or "notifier-processed",
        "imap_ca_file": env.get("IMAP_CA_FILE", "").strip(),
        "imap_poll_seconds": _int(env, "IMAP_POLL_SECONDS", 60, minimum=1),
        "imap_batch_size": _int(env, "IMAP_BATCH_SIZE", 100, minimum=1),
        "imap_timeout_seconds": _float(env, "IMAP_TIMEOUT_SECONDS", 30.0, minimum=1.0),
    }
    if values["imap_port"] > 65535:
        raise ConfigError(f"IMAP_PORT must be a port number, got {values['imap_port']}.")
    for name in ("imap_folder", "imap_processed_folder"):
        if not _FOLDER.match(values[name]):
            raise ConfigError(f"{name.upper()} must be a folder name in printable ASCII, "
                              f"got {values[name]!r}.")  # fmt: skip
    if values["imap_folder"] == values["imap_processed_folder"]:
        raise ConfigError("IMAP_PROCESSED_FOLDER must differ from IMAP_FOLDER.")
    if values["imap_host"] and not (values["imap_user"] and values["imap_password"]):
        raise ConfigError("IMAP_HOST is set: set IMAP_USER and IMAP_PASSWORD too.")
    return values


def _host_port(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip() or default
    host, colon, port = raw.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{name} must be host:port such as 127.0.0.1:2525, got {raw!r}.")
    return raw


def _mailto(mail_from: str) -> str:
    address = parseaddr(mail_from)[1]
    return f"mailto:{address}" if "@" in address else "mailto:ops@localhost"


DEFAULT_PUSH_ORIGINS = (
    "https://fcm.googleapis.com",  # Chrome, Edge, Opera, Samsung Internet
    "https://updates.push.services.mozilla.com",  # Firefox
    "https://*.notify.windows.com",  # Edge legacy / Windows (WNS)
    "https://web.push.apple.com",  # Safari (macOS 13+, iOS 16.4+)
    "https://*.push.apple.com",
)


@dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str
    secret_key: str
    public_url: str
    mail_from: str
    smtp_url: str | None
    feed_urls: tuple[str, ...]
    data_dir: Path
    dev_mode: bool = False
    dev_mailbox_poll_seconds: float = 2.0  # the open mailbox page checks for new mail
    dev_stop_seconds: float = 5.0  # `notifier dev` kills what has not stopped by then
    ops_refresh_seconds: float = 10.0  # an open /ops/ dashboard shows fresh figures this often
    ops_chart_hours: int = 24  # the dashboard's chart of deliveries per hour spans this long
    feed_poll_seconds: int = 300
    feed_timeout_seconds: float = 20.0
    feed_max_bytes: int = 10_000_000
    category_grace_seconds: int = 600
    feed_max_redirects: int = 5
    secret_key_fallbacks: tuple[str, ...] = ()
    rate_limit_per_client: str = "600 per minute"
    rate_limit_emails_per_client: str = "20 per hour"
    rate_limit_emails_per_mailbox: str = "5 per day"
    rate_limit_resends_per_client: str = "5 per hour"
    rate_limit_trusted_networks: tuple[IpNetwork, ...] = ()
    feed_allowed_networks: tuple[IpNetwork, ...] = ()
    smtp_timeout_seconds: float = 30.0
    smtputf8_check_seconds: int = 300
    confirm_max_age_seconds: int = 7 * 24 * 3600
    confirm_resend_seconds: int = 300
    email_pause_days: int = 7  # "pause all email" on the preferences page lasts this long
    resubscribe_max_age_seconds: int = 7 * 24 * 3600  # the unsubscribed page's undo button
    delivery_chunk_size: int = 1000
    # a notice's first chunk per channel: its readers' messages leave before a whole chunk
    # is claimed, addressed and counted, while the rest are planned
    delivery_first_chunk_size: int = 50
    delivery_record_batch: int = 50
    smtp_connections: int = 4
    smtp_lookahead: int = 4
    smtp_keepalive_seconds: float = 30.0
    email_rate_per_second: float = 0.0  # 0: no limit
    push_rate_per_second: float = 0.0  # 0: no limit
    push_origin_rates: tuple[tuple[str, float], ...] = ()  # (origin, most pushes per second)
    push_concurrency_per_origin: int = 64
    delivery_max_attempts: int = 8
    delivery_retry_base_seconds: float = 30.0
    delivery_retry_max_seconds: float = 3600.0
    delivery_lease_seconds: int = 300
    retry_after_max_seconds: float = 3600.0
    retry_after_jitter_seconds: float = 1.0
    retry_group_seconds: float = 1.0
    broker_eta_max_seconds: int = 600
    delivery_max_age_seconds: int = 86400
    sweep_requeue_after_seconds: int = 300
    task_max_retries: int = 10
    email_bounce_limit: int = 3
    bounce_domain: str = ""  # VERP envelope senders bounces+<delivery>@ it; "": MAIL_FROM
    bounce_listen: str = "127.0.0.1:2525"  # `notifier bounces` takes bounce mail here
    bounce_max_bytes: int = 1_000_000  # a returned message larger than this is refused
    soft_bounce_days: int = 3  # soft bounces on this many different days suppress an address
    soft_bounce_window_days: int = 14  # ... when they all fall within this many days
    bounce_report_days: int = 30  # the raw bounce and complaint reports are kept this long
    deliverability_days: int = 7  # bounce and complaint rates are shown for this many days
    complaint_rate_warning_percent: float = 0.1  # complaints per email sent that warn ops
    bounce_rate_warning_percent: float = 2.0  # bounces per email sent that warn ops
    deliverability_min_sent: int = 100  # ... once a day (or notice) sent at least this many
    # Relays' bounce webhooks; each is off (404) while its secret is empty. Kept out of repr.
    postmark_webhook_token: str = field(default="", repr=False)  # in the webhook URL
    mailgun_signing_key: str = field(default="", repr=False)  # HMAC key of Mailgun's calls
    sendgrid_webhook_public_key: str = ""  # ECDSA key that verifies SendGrid's signed calls
    ses_sns_topic_arns: tuple[str, ...] = ()  # SNS topics whose SES notifications we take
    ses_sns_cert_hosts: str = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"  # regex, whole host
    sns_fetch_timeout_seconds: float = 10.0  # fetching a signing cert or confirming a topic
    bounce_webhook_max_age_seconds: int = 600  # a signed webhook call older than this: refused
    imap_host: str = ""  # the bounce mailbox's IMAP server; "": no mailbox is read
    imap_port: int = 993  # 993 with IMAP_SECURITY=ssl, 143 otherwise, unless set
    imap_security: str = "ssl"  # ssl (IMAPS), starttls or plain
    imap_user: str = ""
    imap_password: str = field(default="", repr=False)
    imap_folder: str = "INBOX"  # where returned mail arrives
    imap_processed_folder: str = "notifier-processed"  # where the reader moves what it took
    imap_ca_file: str = ""  # CA certificates to trust for the IMAP server; "": the system's
    imap_poll_seconds: int = 60
    imap_batch_size: int = 100  # messages of ours taken per poll (and fetched per command)
    imap_timeout_seconds: float = 30.0
    dkim_domain: str = ""  # d= of our DKIM signature; "": messages are not signed by us
    dkim_selector: str = ""  # s=: the key is published at <selector>._domainkey.<domain>
    # PEM text (DKIM_PRIVATE_KEY may name a file holding it); kept out of repr(settings)
    dkim_private_key: str = field(default="", repr=False)
    sweep_seconds: int = 60
    sweep_batch_limit: int = 50_000
    delivery_retention_days: int = 30  # finished deliveries planned before this are removed
    retention_seconds: int = 3600  # how often beat runs the retention job
    retention_batch_size: int = 5000  # rows removed (and counted) per transaction
    retention_batch_pause_seconds: float = 0.1  # rest between batches: others' turn
    retention_run_seconds: int = 600  # one run stops after this long; the next goes on
    # While messages are due or being sent a run waits, looking again this often, for at
    # most RETENTION_YIELD_SECONDS of its time: news first, housekeeping in quiet moments.
    retention_busy_check_seconds: float = 1.0
    retention_yield_seconds: int = 300
    broker_visibility_timeout_seconds: int = 3600
    worker_concurrency: int = 4
    vapid_private_key: str = ""
    vapid_public_key: str = ""
    vapid_subject: str = "mailto:ops@localhost"
    push_allowed_origins: tuple[str, ...] = DEFAULT_PUSH_ORIGINS
    push_ttl_seconds: int = 86400
    push_alert_ttl_seconds: int = 3600
    push_backoff_refresh_seconds: float = 0.25
    # A push held through a browser's quiet hours is dropped when its news would be older
    # than this when they end (the article's published time, an alert's start).
    quiet_hours_stale_hours: float = 4.0
    # Pushes per browser per local day (its time zone): article pushes beyond it are skipped;
    # breaking alerts count but always go. 0: no cap.
    push_daily_cap: int = 5
    alert_scheduler_seconds: int = 5
    digest_planner_seconds: int = 60  # how often beat plans the digests that are due
    digest_plan_batch: int = 500  # digest schedules planned per transaction
    digest_planners: int = 2  # planner tasks at once when more than a batch is due
    digest_category_cap: int = 10  # articles per category in a digest; more: a link to the site
    stale_news_hours: int = 12  # an article older than this at send time is not sent instantly
    digest_link_max_age_seconds: int = 30 * 86400  # a digest's web version and switch links
    digest_layout_cache: int = 1000  # distinct digests kept rendered per worker process
    webhook_secret: str = ""
    webhook_max_new_categories: int = 10
    push_connect_timeout_seconds: float = 5.0
    push_read_timeout_seconds: float = 10.0
    push_keepalive_seconds: float = 30.0  # idle connections to push services kept this long
    # A push service not heard from for PUSH_WARM_SECONDS gets its first
    # PUSH_SLOW_START_REQUESTS requests one at a time.
    push_warm_seconds: float = 10.0
    push_slow_start_requests: int = 8
    push_throttle_hold_seconds: float = 5.0  # after a 429 without Retry-After
    push_endpoint_check_seconds: float = 60.0  # a push service host's DNS check trusted
    cors_allowed_origins: tuple[str, ...] = ()
    login_max_attempts_per_account: int = 5
    login_max_attempts_per_ip: int = 20
    login_window_seconds: int = 900
    login_max_attempts_per_account_new_browsers: int = 20
    login_device_days: int = 180
    editor_session_seconds: int = 12 * 3600
    site_icon_url: str = ""
    site_timezone: str = "Asia/Baku"
    trusted_proxies: int = 0
    worker_stale_seconds: int = 30
    worker_heartbeat_seconds: int = 10
    takeover_check_seconds: float = 5.0
    broker_check_seconds: float = 5.0
    broker_reconnect_seconds: float = 2.0
    redis_url: str | None = None  # send-rate limits; defaults to a Redis broker's URL
    amqp_quorum_queues: bool = False
    feed_stale_seconds: int = 900
    feed_concurrency: int = 8
    task_failure_limit: int = 3
    task_failure_window_seconds: int = 3600
    ops_history_days: int = 14
    log_format: str = "json"  # one JSON object per line; "text" for people (notifier dev)
    log_level: str = "INFO"
    metrics_token: str = ""
    metrics_allow_networks: tuple[IpNetwork, ...] = ()
    prometheus_multiproc_dir: Path | None = None  # None: data_dir / "metrics"
    site_name: str = "Aze.Media"
    site_url: str = "https://aze.media/"
    site_accent_color: str = "#b91c1c"  # buttons, links and the header rule; AA on white
    site_logo_url: str = ""  # empty: the site's name is its wordmark
    site_postal_address: str = ""  # in every page and email footer; empty: none shown
    site_privacy_url: str = ""  # the privacy policy, linked from every footer; empty: none
    templates_dir: Path = field(default=PROJECT_ROOT / "templates")

    @property
    def dev_mailbox_dir(self) -> Path:
        return self.data_dir / "mailbox"

    @property
    def sample_feed_path(self) -> Path:
        return self.data_dir / "sample-feed.xml"

    @property
    def metrics_dir(self) -> Path:
        """Where every process writes its prometheus_client files and /metrics reads them."""
        return self.prometheus_multiproc_dir or self.data_dir / "metrics"

    @property
    def uses_dev_mailbox(self) -> bool:
        return not self.smtp_url

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields replaced by name (tests change one setting at a time)."""
        return replace(self, **changes)


# What a production process must be given, not generate: a generated SECRET_KEY or VAPID
# pair differs per host (and per volume), without SMTP_URL mail goes to the dev mailbox, and
# the embedded SQLite database and broker are files in one host's data directory.
PRODUCTION_NEEDS = {
    "DATABASE_URL": "the PostgreSQL every host shares, e.g. postgresql+psycopg://u:p@db/notifier",
    "CELERY_BROKER_URL": "the broker every host shares, e.g. redis://redis:6379/0",
    "SECRET_KEY": "a long random string shared by every process (openssl rand -hex 32)",
    "VAPID_PRIVATE_KEY": "the key pair `notifier vapid-keys` prints",
    "VAPID_PUBLIC_KEY": "the key pair `notifier vapid-keys` prints",
    "SMTP_URL": "your mail relay, e.g. smtp+starttls://user:pass@smtp.example.com:587",
}


def check_production(env: Mapping[str, str] | None = None) -> None:
    """With an https PUBLIC_URL or NOTIFIER_ENV=production, refuse to start on generated
    secrets or without a mail server: ConfigError names what to set."""
    env = os.environ if env is None else env
    production = env.get("NOTIFIER_ENV", "").strip().lower() == "production"
    if not (production or env.get("PUBLIC_URL", "").strip().startswith("https://")):
        return
    missing = [name for name in PRODUCTION_NEEDS if not env.get(name, "").strip()]
    if missing:
        why = "; ".join(f"{name}: {PRODUCTION_NEEDS[name]}" for name in missing)
        raise ConfigError(
            "This is a production setup (https PUBLIC_URL or NOTIFIER_ENV=production), so "
            f"these must be set, not generated or left to defaults: {why}."
        )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from the environment; a bad one raises ConfigError with a sentence."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("NOTIFIER_DATA_DIR", "var")).resolve()
    dev_mode = env.get("NOTIFIER_DEV", "") not in ("", "0", "false")
    public_url = env.get("PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
    if urlsplit(public_url).scheme not in ("http", "https"):
        raise ConfigError(f"PUBLIC_URL must start with http:// or https://, got {public_url!r}.")
    smtp_url = env.get("SMTP_URL", "").strip() or None
    if smtp_url and urlsplit(smtp_url).scheme not in ("smtp", "smtps", "smtp+starttls"):
        raise ConfigError(
            "SMTP_URL must look like smtp://host:port, smtps://… or smtp+starttls://…"
        )
    feed_urls = _list(env, "FEED_URLS")
    if not feed_urls and dev_mode:
        feed_urls = (f"{public_url}/dev/sample-feed.xml",)
    mail_from = env.get("MAIL_FROM", "Aze.Media <news@localhost>")
    vapid_private_key, vapid_public_key = _vapid_keys(env, data_dir)
    dkim_domain, dkim_selector, dkim_private_key = _dkim(env)
    return Settings(
        database_url=env.get("DATABASE_URL", f"sqlite:///{data_dir / 'notifier.sqlite'}"),
        broker_url=env.get("CELERY_BROKER_URL", f"sqla+sqlite:///{data_dir / 'broker.sqlite'}"),
        secret_key=_secret_key(env, data_dir),
        public_url=public_url,
        mail_from=mail_from,
        smtp_url=smtp_url,
        feed_urls=feed_urls,
        data_dir=data_dir,
        dev_mode=dev_mode,
        dev_mailbox_poll_seconds=_float(env, "DEV_MAILBOX_POLL_SECONDS", 2.0, minimum=0.2),
        dev_stop_seconds=_float(env, "DEV_STOP_SECONDS", 5.0, minimum=0.5),
        ops_refresh_seconds=_float(env, "OPS_REFRESH_SECONDS", 10.0, minimum=1.0),
        ops_chart_hours=_int(env, "OPS_CHART_HOURS", 24, minimum=2),
        feed_poll_seconds=_int(env, "FEED_POLL_SECONDS", 300, minimum=1),
        feed_timeout_seconds=_float(env, "FEED_TIMEOUT_SECONDS", 20.0, minimum=0.1),
        feed_max_bytes=_int(env, "FEED_MAX_BYTES", 10_000_000, minimum=1024),
        category_grace_seconds=_int(env, "CATEGORY_GRACE_SECONDS", 600),
        feed_max_redirects=_int(env, "FEED_MAX_REDIRECTS", 5),
        secret_key_fallbacks=tuple(
            key.strip() for key in env.get("SECRET_KEY_FALLBACKS", "").split(",") if key.strip()
        ),
        rate_limit_per_client=_rate(env, "RATE_LIMIT_PER_CLIENT", "600 per minute"),
        rate_limit_emails_per_client=_rate(env, "RATE_LIMIT_EMAILS_PER_CLIENT", "20 per hour"),
        rate_limit_emails_per_mailbox=_rate(env, "RATE_LIMIT_EMAILS_PER_MAILBOX", "5 per day"),
        rate_limit_resends_per_client=_rate(env, "RATE_LIMIT_RESENDS_PER_CLIENT", "5 per hour"),
        rate_limit_trusted_networks=_networks(env, "RATE_LIMIT_TRUSTED_NETWORKS", ""),
        feed_allowed_networks=_networks(env, "FEED_ALLOWED_NETWORKS", ""),
        smtp_timeout_seconds=_float(env, "SMTP_TIMEOUT_SECONDS", 30.0, minimum=0.1),
        smtputf8_check_seconds=_int(env, "SMTPUTF8_CHECK_SECONDS", 300),
        confirm_max_age_seconds=_int(env, "CONFIRM_MAX_AGE_SECONDS", 7 * 24 * 3600, minimum=60),
        confirm_resend_seconds=_int(env, "CONFIRM_RESEND_SECONDS", 300),
        email_pause_days=_int(env, "EMAIL_PAUSE_DAYS", 7, minimum=1),
        resubscribe_max_age_seconds=_int(
            env, "RESUBSCRIBE_MAX_AGE_SECONDS", 7 * 24 * 3600, minimum=60
        ),
        delivery_chunk_size=_int(env, "DELIVERY_CHUNK_SIZE", 1000, minimum=1),
        delivery_first_chunk_size=_int(env, "DELIVERY_FIRST_CHUNK_SIZE", 50, minimum=1),
        delivery_record_batch=_int(env, "DELIVERY_RECORD_BATCH", 50, minimum=1),
        smtp_connections=_int(env, "SMTP_CONNECTIONS", 4, minimum=1),
        smtp_lookahead=_int(env, "SMTP_LOOKAHEAD", 4, minimum=1),
        smtp_keepalive_seconds=_float(env, "SMTP_KEEPALIVE_SECONDS", 30.0),
        email_rate_per_second=_float(env, "EMAIL_RATE_PER_SECOND", 0.0),
        push_rate_per_second=_float(env, "PUSH_RATE_PER_SECOND", 0.0),
        push_origin_rates=_origin_rates(env, "PUSH_ORIGIN_RATES"),
        push_concurrency_per_origin=_int(env, "PUSH_CONCURRENCY_PER_ORIGIN", 64, minimum=1),
        delivery_max_attempts=_int(env, "DELIVERY_MAX_ATTEMPTS", 8, minimum=1),
        delivery_retry_base_seconds=_float(env, "DELIVERY_RETRY_BASE_SECONDS", 30.0),
        delivery_retry_max_seconds=_float(env, "DELIVERY_RETRY_MAX_SECONDS", 3600.0),
        delivery_lease_seconds=_int(env, "DELIVERY_LEASE_SECONDS", 300, minimum=1),
        retry_after_max_seconds=_float(env, "RETRY_AFTER_MAX_SECONDS", 3600.0, minimum=1.0),
        retry_after_jitter_seconds=_float(env, "RETRY_AFTER_JITTER_SECONDS", 1.0),
        retry_group_seconds=_float(env, "RETRY_GROUP_SECONDS", 1.0, minimum=0.1),
        broker_eta_max_seconds=_int(env, "BROKER_ETA_MAX_SECONDS", 600, minimum=10),
        delivery_max_age_seconds=_int(env, "DELIVERY_MAX_AGE_SECONDS", 86400, minimum=60),
        sweep_requeue_after_seconds=_int(env, "SWEEP_REQUEUE_AFTER_SECONDS", 300, minimum=1),
        task_max_retries=_int(env, "TASK_MAX_RETRIES", 10),
        email_bounce_limit=_int(env, "EMAIL_BOUNCE_LIMIT", 3, minimum=1),
        bounce_domain=_bounce_domain(env),
        bounce_listen=_host_port(env, "BOUNCE_LISTEN", "127.0.0.1:2525"),
        bounce_max_bytes=_int(env, "BOUNCE_MAX_BYTES", 1_000_000, minimum=10_000),
        soft_bounce_days=_int(env, "SOFT_BOUNCE_DAYS", 3, minimum=2),
        soft_bounce_window_days=_int(env, "SOFT_BOUNCE_WINDOW_DAYS", 14, minimum=2),
        bounce_report_days=_int(env, "BOUNCE_REPORT_DAYS", 30, minimum=1),
        deliverability_days=_int(env, "DELIVERABILITY_DAYS", 7, minimum=1),
        complaint_rate_warning_percent=_float(
            env, "COMPLAINT_RATE_WARNING_PERCENT", 0.1, minimum=0.001
        ),
        bounce_rate_warning_percent=_float(env, "BOUNCE_RATE_WARNING_PERCENT", 2.0, minimum=0.01),
        deliverability_min_sent=_int(env, "DELIVERABILITY_MIN_SENT", 100, minimum=1),
        postmark_webhook_token=env.get("POSTMARK_WEBHOOK_TOKEN", "").strip(),
        mailgun_signing_key=env.get("MAILGUN_SIGNING_KEY", "").strip(),
        sendgrid_webhook_public_key=_sendgrid_key(env),
        ses_sns_topic_arns=_list(env, "SES_SNS_TOPIC_ARNS"),
        ses_sns_cert_hosts=_host_pattern(env, "SES_SNS_CERT_HOSTS"),
        sns_fetch_timeout_seconds=_float(env, "SNS_FETCH_TIMEOUT_SECONDS", 10.0, minimum=0.5),
        bounce_webhook_max_age_seconds=_int(env, "BOUNCE_WEBHOOK_MAX_AGE_SECONDS", 600, minimum=10),
        **_imap(env),
        dkim_domain=dkim_domain,
        dkim_selector=dkim_selector,
        dkim_private_key=dkim_private_key,
        sweep_seconds=_int(env, "SWEEP_SECONDS", 60, minimum=1),
        sweep_batch_limit=_int(env, "SWEEP_BATCH_LIMIT", 50_000, minimum=1),
        # At least 3: a row may still be sent (a retry, a push held through quiet hours) up to
        # a day after it was planned and count in that day's figures and push cap.
        delivery_retention_days=_int(env, "DELIVERY_RETENTION_DAYS", 30, minimum=3),
        retention_seconds=_int(env, "RETENTION_SECONDS", 3600, minimum=60),
        retention_batch_size=_int(env, "RETENTION_BATCH_SIZE", 5000, minimum=1),
        retention_batch_pause_seconds=_float(env, "RETENTION_BATCH_PAUSE_SECONDS", 0.1),
        retention_run_seconds=_int(env, "RETENTION_RUN_SECONDS", 600, minimum=1),
        retention_busy_check_seconds=_float(env, "RETENTION_BUSY_CHECK_SECONDS", 1.0, 0.1),
        retention_yield_seconds=_int(env, "RETENTION_YIELD_SECONDS", 300, minimum=0),
        broker_visibility_timeout_seconds=_int(
            env, "BROKER_VISIBILITY_TIMEOUT_SECONDS", 3600, minimum=60
        ),
        worker_concurrency=_int(env, "WORKER_CONCURRENCY", 2 if dev_mode else 4, minimum=1),
        vapid_private_key=vapid_private_key,
        vapid_public_key=vapid_public_key,
        vapid_subject=env.get("VAPID_SUBJECT", "") or _mailto(mail_from),
        push_allowed_origins=_list(env, "PUSH_ALLOWED_ORIGINS") or DEFAULT_PUSH_ORIGINS,
        push_ttl_seconds=_int(env, "PUSH_TTL_SECONDS", 86400),
        push_alert_ttl_seconds=_int(env, "PUSH_ALERT_TTL_SECONDS", 3600),
        push_backoff_refresh_seconds=_float(env, "PUSH_BACKOFF_REFRESH_SECONDS", 0.25, 0.01),
        quiet_hours_stale_hours=_float(env, "QUIET_HOURS_STALE_HOURS", 4.0),
        push_daily_cap=_int(env, "PUSH_DAILY_CAP", 5),
        alert_scheduler_seconds=_int(env, "ALERT_SCHEDULER_SECONDS", 5, minimum=1),
        digest_planner_seconds=_int(env, "DIGEST_PLANNER_SECONDS", 60, minimum=1),
        digest_plan_batch=_int(env, "DIGEST_PLAN_BATCH", 500, minimum=1),
        digest_planners=_int(env, "DIGEST_PLANNERS", 2, minimum=1),
        digest_category_cap=_int(env, "DIGEST_CATEGORY_CAP", 10, minimum=1),
        stale_news_hours=_int(env, "STALE_NEWS_HOURS", 12, minimum=1),
        digest_link_max_age_seconds=_int(
            env, "DIGEST_LINK_MAX_AGE_SECONDS", 30 * 86400, minimum=60
        ),
        digest_layout_cache=_int(env, "DIGEST_LAYOUT_CACHE", 1000, minimum=1),
        webhook_secret=env.get("WEBHOOK_SECRET", ""),
        webhook_max_new_categories=_int(env, "WEBHOOK_MAX_NEW_CATEGORIES", 10),
        push_connect_timeout_seconds=_float(env, "PUSH_CONNECT_TIMEOUT_SECONDS", 5.0, 0.1),
        push_read_timeout_seconds=_float(env, "PUSH_READ_TIMEOUT_SECONDS", 10.0, 0.1),
        push_keepalive_seconds=_float(env, "PUSH_KEEPALIVE_SECONDS", 30.0),
        push_warm_seconds=_float(env, "PUSH_WARM_SECONDS", 10.0),
        push_slow_start_requests=_int(env, "PUSH_SLOW_START_REQUESTS", 8, minimum=1),
        push_throttle_hold_seconds=_float(env, "PUSH_THROTTLE_HOLD_SECONDS", 5.0, 0.1),
        push_endpoint_check_seconds=_float(env, "PUSH_ENDPOINT_CHECK_SECONDS", 60.0, 1.0),
        cors_allowed_origins=tuple(o.rstrip("/") for o in _list(env, "CORS_ALLOWED_ORIGINS")),
        login_max_attempts_per_account=_int(env, "LOGIN_MAX_ATTEMPTS_PER_ACCOUNT", 5, minimum=1),
        login_max_attempts_per_ip=_int(env, "LOGIN_MAX_ATTEMPTS_PER_IP", 20, minimum=1),
        login_window_seconds=_int(env, "LOGIN_WINDOW_SECONDS", 900, minimum=1),
        login_max_attempts_per_account_new_browsers=_int(
            env, "LOGIN_MAX_ATTEMPTS_PER_ACCOUNT_NEW_BROWSERS", 20, minimum=1
        ),
        login_device_days=_int(env, "LOGIN_DEVICE_DAYS", 180, minimum=1),
        editor_session_seconds=_int(env, "EDITOR_SESSION_SECONDS", 12 * 3600, minimum=60),
        site_icon_url=env.get("SITE_ICON_URL", "") or f"{public_url}/static/icon-192.png",
        trusted_proxies=_int(env, "TRUSTED_PROXIES", 0),
        worker_stale_seconds=_int(env, "WORKER_STALE_SECONDS", 30, minimum=5),
        worker_heartbeat_seconds=_int(env, "WORKER_HEARTBEAT_SECONDS", 10, minimum=1),
        takeover_check_seconds=_float(env, "TAKEOVER_CHECK_SECONDS", 5.0, minimum=0.5),
        broker_check_seconds=_float(env, "BROKER_CHECK_SECONDS", 5.0, minimum=0.5),
        broker_reconnect_seconds=_float(env, "BROKER_RECONNECT_SECONDS", 2.0, minimum=0.5),
        redis_url=_redis_url(env),
        amqp_quorum_queues=env.get("AMQP_QUORUM_QUEUES", "") not in ("", "0", "false"),
        feed_stale_seconds=_int(env, "FEED_STALE_SECONDS", 900, minimum=10),
        feed_concurrency=_int(env, "FEED_CONCURRENCY", 8, minimum=1),
        task_failure_limit=_int(env, "TASK_FAILURE_LIMIT", 3, minimum=1),
        task_failure_window_seconds=_int(env, "TASK_FAILURE_WINDOW_SECONDS", 3600, minimum=60),
        ops_history_days=_int(env, "OPS_HISTORY_DAYS", 14, minimum=1),
        log_format=_choice(env, "LOG_FORMAT", "text" if dev_mode else "json", LOG_FORMATS),
        log_level=_choice(env, "LOG_LEVEL", "INFO", LOG_LEVELS),
        metrics_token=env.get("METRICS_TOKEN", "").strip(),
        metrics_allow_networks=_networks(env, "METRICS_ALLOW_NETWORKS", INTERNAL_NETWORKS),
        prometheus_multiproc_dir=Path(
            env.get("PROMETHEUS_MULTIPROC_DIR", "") or data_dir / "metrics"
        ).resolve(),
        site_timezone=_timezone(env.get("SITE_TIMEZONE", "Asia/Baku")),
        site_name=env.get("SITE_NAME", "Aze.Media"),
        site_url=env.get("SITE_URL", "https://aze.media/"),
        site_accent_color=_accent(env),
        site_logo_url=_web_url(env, "SITE_LOGO_URL", public_url, paths=True),
        site_postal_address=" ".join(env.get("SITE_POSTAL_ADDRESS", "").split()),
        site_privacy_url=_web_url(env, "SITE_PRIVACY_URL", public_url),
        templates_dir=Path(env.get("TEMPLATES_DIR", PROJECT_ROOT / "templates")),
    )
