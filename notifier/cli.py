"""The `notifier` command: the one entry point for operations."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from notifier.config import ConfigError, Settings, check_production, load_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def _settings(service: bool = False) -> Settings:
    """The settings; for a service (web, worker, beat) also the production checks."""
    try:
        if service:
            check_production()
        return load_settings()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _export_metrics_dir(settings: Settings, service: str) -> Path:
    """Give this run of a service its own directory for prometheus_client's per-process files
    and export it in PROMETHEUS_MULTIPROC_DIR, before anything imports prometheus_client (it
    picks its mode then); gunicorn workers and Celery children inherit it.

    `<metrics_dir>/<service>-<pid>@<host>`: restarting one service never deletes the live files
    of another that shares the directory. Runs on this host that have ended are removed here,
    once per service start (their counters restart, which Prometheus reads as a reset).
    /metrics sums every run's files.
    """
    root, host = settings.metrics_dir, socket.gethostname()
    root.mkdir(parents=True, exist_ok=True)
    for run in root.iterdir():
        name, _, run_host = run.name.rpartition("@")
        pid = name.rpartition("-")[2]
        if run.is_dir() and run_host == host and pid.isdigit() and not _other_live_pid(int(pid)):
            shutil.rmtree(run, ignore_errors=True)
    run_dir = root / f"{service}-{os.getpid()}@{host}"
    run_dir.mkdir(exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(run_dir)
    return run_dir


def _other_live_pid(pid: int) -> bool:
    if pid == os.getpid():  # a previous run that had our pid (pid 1 in a container)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


@click.group()
def cli() -> None:
    """Email and web-push notifications for a news site."""


@cli.command()
def migrate() -> None:
    """Create the database or upgrade it to the latest schema."""
    from kombu.exceptions import OperationalError as BrokerError
    from sqlalchemy.exc import OperationalError

    from notifier.schema import upgrade_database

    settings = _settings()
    try:
        upgrade_database(settings.database_url)
        _register_feeds(settings)
    except OperationalError as error:
        raise click.ClickException(f"Cannot reach the database: {error.orig}") from None
    try:
        _declare_queues(settings)  # the SQLite broker's, before web, worker and beat start
    except (OperationalError, BrokerError) as error:
        raise click.ClickException(
            f"Cannot reach the broker: {getattr(error, 'orig', None) or error}"
        ) from None
    click.echo("Database is up to date.")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
def web(host: str, port: int, workers: int) -> None:
    """Serve the web app and API with gunicorn."""
    settings = _settings(service=True)
    metrics_dir = _export_metrics_dir(settings, "web")
    from gunicorn.app.base import BaseApplication
    from prometheus_client import multiprocess

    from notifier.logs import configure_logging, gunicorn_logconfig
    from notifier.web import create_app

    configure_logging(settings)

    def child_exit(_server, gunicorn_worker) -> None:
        multiprocess.mark_process_dead(gunicorn_worker.pid, str(metrics_dir))

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", "-")
            self.cfg.set("logconfig_dict", gunicorn_logconfig(settings))
            self.cfg.set("child_exit", child_exit)
            # gunicorn 25+ opens a control socket at one path per user ($HOME/.gunicorn):
            # a second gunicorn of that user (an exporter, another web) would take it over.
            # Nothing here uses gunicornc. (Older gunicorn has no such setting.)
            if "control_socket_disable" in self.cfg.settings:
                self.cfg.set("control_socket_disable", True)

        def load(self):
            return create_app(settings)

    _Gunicorn().run()


@cli.command("metrics-exporter")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9108, show_default=True, type=click.IntRange(1, 65535))
def metrics_exporter(host: str, port: int) -> None:
    """Serve this host's counters on /metrics, for a host without `notifier web` (a worker
    host): what its worker, feeds node and beat processes recorded. One gunicorn worker."""
    settings = _settings(service=True)
    _export_metrics_dir(settings, "exporter")
    from gunicorn.app.base import BaseApplication

    from notifier.logs import configure_logging, gunicorn_logconfig
    from notifier.web.host_metrics import create_exporter_app

    configure_logging(settings)

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", 1)
            self.cfg.set("logconfig_dict", gunicorn_logconfig(settings))
            if "control_socket_disable" in self.cfg.settings:  # see `web`
                self.cfg.set("control_socket_disable", True)

        def load(self):
            return create_exporter_app(settings)

    _Gunicorn().run()


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker (extra arguments go to `celery worker`)."""
    settings = _settings(service=True)
    metrics_dir = _export_metrics_dir(settings, "worker")
    from celery.signals import worker_process_shutdown
    from prometheus_client import multiprocess

    from notifier.celery_app import make_celery

    @worker_process_shutdown.connect(weak=False)
    def child_exit(pid: int, **_kwargs) -> None:
        multiprocess.mark_process_dead(pid, str(metrics_dir))

    from notifier.polling.node import SENDING_QUEUE, add_feeds_node

    app = make_celery(settings)
    if not _names_queues(celery_args):  # with -Q the operator places the nodes themselves
        add_feeds_node(app)
        celery_args = (f"--queues={SENDING_QUEUE}", *celery_args)
    _run_worker(app, _celery_argv(settings, "worker", celery_args))


def _run_worker(app, argv: list[str]) -> None:
    """Run `celery worker` and exit with its exit code. Celery's worker_main (and start)
    drop it, so a worker that could not start (say under a name another worker uses)
    exited 0; this is what start does, keeping the code click returns."""
    from celery.bin.celery import celery

    celery.params[0].default = app
    try:
        code = celery.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exit_:
        code = exit_.exit_code
    finally:
        celery.params[0].default = None
    if isinstance(code, int) and code:
        raise SystemExit(code)


def _names_queues(celery_args: tuple[str, ...]) -> bool:
    return any(arg == "-Q" or arg.startswith(("-Q", "--queues")) for arg in celery_args)


@cli.command("feeds-worker", context_settings={"ignore_unknown_options": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def feeds_worker(celery_args: tuple[str, ...]) -> None:
    """Run only a feeds node (`notifier worker` starts one itself): feed fetches, in
    FEED_CONCURRENCY threads, on the feeds queue."""
    settings = _settings(service=True)
    _export_metrics_dir(settings, "feeds")
    from notifier.celery_app import make_celery
    from notifier.polling.node import FEEDS_QUEUE, watch_parent

    app = make_celery(settings)
    watch_parent(app)
    named = any(arg in ("-n", "--hostname") or arg.startswith("--hostname=") for arg in celery_args)
    argv = (f"--queues={FEEDS_QUEUE}", "--pool=threads",
            f"--concurrency={settings.feed_concurrency}", *(() if named else ("-n", "feeds@%h")),
            *celery_args)  # fmt: skip
    _run_worker(app, _celery_argv(settings, "worker", argv))


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat(celery_args: tuple[str, ...]) -> None:
    """Run Celery beat: feed polling and the sweeper on their schedules."""
    settings = _settings(service=True)
    _export_metrics_dir(settings, "beat")
    from notifier.celery_app import make_celery

    make_celery(settings).start(_celery_argv(settings, "beat", celery_args))


def _celery_argv(settings: Settings, command: str, celery_args: tuple[str, ...]) -> list[str]:
    """Our logging for Celery too; with JSON logs no banner (--quiet): every line is JSON."""
    from notifier.logs import configure_celery_logging

    configure_celery_logging(settings)
    quiet = ["--quiet"] if settings.log_format == "json" else []
    return [*quiet, command, f"--loglevel={settings.log_level}", *celery_args]


@cli.command()
@click.option("--lmtp", is_flag=True, help="Speak LMTP (a local MTA's delivery) instead of SMTP.")
@click.option(
    "--imap-once", is_flag=True, help="Instead: read the bounce mailbox once (as beat does), exit."
)
def bounces(lmtp: bool, imap_once: bool) -> None:
    """Take returned mail for BOUNCE_DOMAIN on BOUNCE_LISTEN and process each report."""
    if imap_once:
        _read_bounce_mailbox_once()
        return
    settings = _settings(service=True)
    _export_metrics_dir(settings, "bounces")
    from notifier.db import session_factory
    from notifier.inbound.listener import bounce_listener
    from notifier.logs import configure_logging

    configure_logging(settings)
    try:
        listener = bounce_listener(settings, session_factory(settings.database_url), lmtp)
        listener.start()
    except (ValueError, OSError, RuntimeError) as error:
        raise click.ClickException(f"Cannot listen on {settings.bounce_listen}: {error}") from None
    click.echo(f"Taking returned mail for {settings.bounce_domain} on {settings.bounce_listen} "
               f"({'LMTP' if lmtp else 'SMTP'}).")  # fmt: skip
    stopped = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.append(True))
    try:
        while not stopped:
            time.sleep(0.2)
    finally:
        listener.stop()


def _read_bounce_mailbox_once() -> None:
    """One poll of the bounce mailbox, for operators: what was taken, left and failed; exit
    code 1 with a sentence when the mailbox cannot be read or a message failed."""
    settings = _settings()
    if not settings.imap_host:
        raise click.ClickException("IMAP_HOST is not set: there is no bounce mailbox to read.")
    from notifier.db import session_factory
    from notifier.inbound.imap_reader import read_bounce_mailbox
    from notifier.inbound.mailbox import MailboxError

    try:
        poll = read_bounce_mailbox(settings, session_factory(settings.database_url))
    except MailboxError as error:
        raise click.ClickException(str(error)) from None
    where = f"{settings.imap_user}@{settings.imap_host}/{settings.imap_folder}"
    if poll.busy:
        click.echo(f"{where}: another poll is reading the mailbox right now; nothing read.")
        return
    click.echo(f"{where}: {len(poll.taken)} taken (moved to {settings.imap_processed_folder}), "
               f"{len(poll.left)} left alone, {len(poll.failed)} failed.")  # fmt: skip
    for uid, processed in poll.taken.items():
        click.echo(f"  UID {uid}: {processed.kind.value}, delivery {processed.delivery_id}"
                   f"{' (seen before)' if processed.replay else ''}")  # fmt: skip
    for uid, cause in poll.failed.items():
        click.echo(f"  UID {uid}: failed, left in place: {cause}")
    if poll.failed:
        raise click.ClickException(f"{len(poll.failed)} message(s) could not be processed; "
                                   "they stay in the mailbox (see `notifier status`).")  # fmt: skip


@cli.command("sample-article")
@click.option("--title", required=True, help="Headline of the new article.")
@click.option("--category", "categories", multiple=True, default=["News"], show_default=True)
@click.option("--summary", default="A new article published for trying notifier.")
@click.option("--image-url", default=None)
def sample_article(title: str, categories: tuple[str, ...], summary: str, image_url: str | None):
    """Publish an article to the local sample feed (development)."""
    from notifier.sample_feed import add_sample_article

    settings = _settings()
    try:
        guid = add_sample_article(
            settings.sample_feed_path, title, list(categories), summary, image_url
        )
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Added {guid} to {settings.sample_feed_path}; the next feed poll announces it.")


@cli.command("vapid-keys")
def vapid_keys() -> None:
    """Print a new VAPID key pair for web push, as environment variables."""
    from notifier.vapid import generate_keypair

    private, public = generate_keypair()
    click.echo(f"VAPID_PRIVATE_KEY={private}\nVAPID_PUBLIC_KEY={public}")


@cli.command("dkim-record")
@click.option(
    "--new-key",
    type=click.Path(dir_okay=False, writable=True),
    help="Write a new 2048-bit RSA key to this file (kept private) and use it.",
)
def dkim_record(new_key: str | None) -> None:
    """Print the DNS TXT record receivers check our DKIM signatures against."""
    from notifier.channels.dkim import DkimSigner, new_private_key

    if new_key:
        if Path(new_key).exists():
            raise click.ClickException(f"{new_key} exists; choose another file for a new key.")
        Path(new_key).touch(mode=0o600)
        Path(new_key).write_text(new_private_key(), encoding="ascii")
        click.echo(f"Wrote a new key to {new_key}: set DKIM_PRIVATE_KEY={new_key}", err=True)
        try:
            settings = load_settings({**os.environ, "DKIM_PRIVATE_KEY": new_key})
        except ConfigError as error:
            raise click.ClickException(str(error)) from None
    else:
        settings = _settings()
    if not settings.dkim_domain:
        raise click.ClickException(
            "Set DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY (or pass --new-key FILE)."
        )
    signer = DkimSigner(settings.dkim_domain, settings.dkim_selector, settings.dkim_private_key)
    name = f"{settings.dkim_selector}._domainkey.{settings.dkim_domain}"
    record = signer.public_record()
    # TXT strings hold 255 characters at most; a 2048-bit key is longer, so it is split.
    strings = " ".join(f'"{record[i : i + 255]}"' for i in range(0, len(record), 255))
    click.echo(f"{name}. IN TXT ( {strings} )")


def _password(from_stdin: bool) -> str:
    """One line of stdin (for scripts), or typed twice without echo."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@contextmanager
def _editor_session(settings: Settings) -> Iterator[Session]:
    """Commit on success; refusals and database trouble become a sentence, not a traceback."""
    from sqlalchemy.exc import DBAPIError

    from notifier.db import session_scope
    from notifier.domain.api_tokens import ApiTokenError
    from notifier.domain.editors import EditorError

    try:
        with session_scope(settings.database_url) as session:
            yield session
            session.commit()
    except (EditorError, ApiTokenError) as error:
        raise click.ClickException(str(error)) from None
    except DBAPIError as error:
        raise click.ClickException(
            f"Database error: {error.orig}. Has `notifier migrate` run?"
        ) from None


@cli.command("create-editor")
@click.argument("email")
@click.option("--role", type=click.Choice(["editor", "admin"]), default="editor", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from one line of stdin.")
def create_editor_command(email: str, role: str, password_stdin: bool) -> None:
    """Add an editor account (asks for the password twice unless --password-stdin)."""
    from notifier.domain.editors import create_editor

    settings = _settings()
    password = _password(password_stdin)
    with _editor_session(settings) as session:
        editor = create_editor(session, email, password, role)
    click.echo(f"Created {editor.role} {editor.email}.")


@cli.command("reset-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from one line of stdin.")
def reset_password_command(email: str, password_stdin: bool) -> None:
    """Set a new password for an editor account."""
    from notifier.domain.editors import set_password

    settings = _settings()
    password = _password(password_stdin)
    with _editor_session(settings) as session:
        editor = set_password(session, email, password)
    click.echo(f"New password set for {editor.email}.")


@cli.command("create-token")
@click.argument("name")
def create_token_command(name: str) -> None:
    """Issue an API token for a script or the CMS; it is printed once, only its hash is kept."""
    from notifier.domain.api_tokens import issue_token
    from notifier.timeutil import utcnow

    with _editor_session(_settings()) as session:
        token, plaintext = issue_token(session, name, None, utcnow())
    click.echo(
        f"Token {token.name!r} ({token.prefix}…); store it now, it is not shown again:", err=True
    )
    click.echo(plaintext)


STATUS_TIMEOUT_SECONDS = 10.0  # connect and per-query limit of `notifier status`


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document, for machines.")
@click.option("--ready", is_flag=True, help="Only what /readyz checks: database, broker, schema.")
@click.option(
    "--this-worker", is_flag=True, help="Only: does a worker on this host send heartbeats?"
)
def status(as_json: bool, ready: bool, this_worker: bool) -> None:
    """Workers, queues, feeds, recent failures. Exit 1 when something needs attention."""
    if ready and this_worker:
        raise click.UsageError("--ready and --this-worker cannot be combined.")
    settings = _settings()
    if ready:
        healthy = _status_ready(settings, as_json)
    elif this_worker:
        healthy = _status_this_worker(settings, as_json)
    else:
        healthy = _status_report(settings, as_json)
    click.get_current_context().exit(0 if healthy else 1)


def _status_report(settings: Settings, as_json: bool) -> bool:
    import json

    from sqlalchemy.orm import Session

    from notifier.celery_app import make_celery
    from notifier.ops.readiness import probe_engine
    from notifier.ops.status import gather_status, render_text
    from notifier.timeutil import utcnow

    with Session(probe_engine(settings.database_url, STATUS_TIMEOUT_SECONDS)) as session:
        report = gather_status(session, make_celery(settings), settings, utcnow())
    click.echo(json.dumps(report.as_json(), indent=2) if as_json else render_text(report))
    return report.healthy


def _status_ready(settings: Settings, as_json: bool) -> bool:
    import json

    from notifier.ops.readiness import check_readiness

    readiness = check_readiness(settings)
    if as_json:
        click.echo(json.dumps(readiness.as_json(), indent=2))
    else:
        for check in readiness.checks:
            click.echo(f"{check.name}: {'ok' if check.ok else 'FAILING'}, {check.detail}")
    return readiness.ready


def _status_this_worker(settings: Settings, as_json: bool) -> bool:
    """For a worker container's healthcheck: a fresh heartbeat from a worker on this host."""
    import json

    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import Session

    from notifier.ops.readiness import probe_engine
    from notifier.ops.status import age, this_host_worker
    from notifier.ops.workers import worker_states
    from notifier.timeutil import utcnow

    now, host = utcnow(), socket.gethostname()
    try:
        with Session(probe_engine(settings.database_url, STATUS_TIMEOUT_SECONDS)) as session:
            found = this_host_worker(
                worker_states(session, now, settings.worker_stale_seconds), host
            )
    except SQLAlchemyError as error:
        message = f"The database is unreachable: {getattr(error, 'orig', None) or error}"
        found = None
    else:
        message = (
            f"{found.hostname} is online: heartbeat {age(now, found.seen_at)} ago."
            if found
            else f"No worker on {host} sent a heartbeat in the last "
            f"{settings.worker_stale_seconds}s."
        )
    click.echo(
        json.dumps({"healthy": found is not None, "message": message}) if as_json else message
    )
    return found is not None


@cli.command()
def retention() -> None:
    """Remove finished deliveries older than DELIVERY_RETENTION_DAYS now (what beat runs every
    RETENTION_SECONDS), counting them into the summary first."""
    from sqlalchemy.exc import SQLAlchemyError

    from notifier.retention import run_retention
    from notifier.wording import plural

    settings = _settings()
    try:
        run = run_retention(settings)
    except SQLAlchemyError as error:
        cause = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise click.ClickException(
            f"Retention stopped: the database refused it ({cause}). What it removed before "
            "stays removed and counted; run it again once the database answers."
        ) from None
    seconds = ((run.finished_at or run.started_at) - run.started_at).total_seconds()
    click.echo(
        f"Removed {run.removed:,} deliveries planned before {run.cutoff:%Y-%m-%d %H:%M} UTC in "
        f"{seconds:.1f} s ({plural(run.batches, 'batch', 'batches')} of at most "
        f"{settings.retention_batch_size:,})."
    )
    if not run.complete:
        click.echo(f"Stopped after RETENTION_RUN_SECONDS ({settings.retention_run_seconds}); "
                   "run it again to go on.")  # fmt: skip


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def dev(host: str, port: int) -> None:
    """Everything in one terminal: migrate, then web + worker + beat on embedded defaults."""
    os.environ["NOTIFIER_DEV"] = "1"
    os.environ.setdefault("PUBLIC_URL", f"http://{host}:{port}")
    os.environ.setdefault("FEED_POLL_SECONDS", "10")
    settings = _settings()
    # web, worker and beat each make their own run directory in it (and clear ended runs).
    settings.metrics_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(settings.metrics_dir)
    from notifier.sample_feed import ensure_sample_feed
    from notifier.schema import upgrade_database

    upgrade_database(settings.database_url)
    _declare_queues(settings)
    _register_feeds(settings)
    ensure_sample_feed(settings.sample_feed_path)
    from notifier.logs import configure_logging

    configure_logging(settings)  # text; web, worker and beat inherit NOTIFIER_DEV, so text too
    exe = [sys.executable, "-m", "notifier.cli"]
    commands = {
        "web": [*exe, "web", "--host", host, "--port", str(port), "--workers", "1"],
        "worker": [*exe, "worker"],
        "beat": [*exe, "beat"],
    }
    _run_together(commands, settings, lambda: _announce(settings))


def _declare_queues(settings: Settings) -> None:
    from notifier.celery_app import declare_queues, make_celery

    declare_queues(make_celery(settings))


def _register_feeds(settings: Settings) -> None:
    """Feeds count as added when the service starts, not at beat's first poll: an article
    published in between is new and is announced."""
    from notifier.db import session_scope
    from notifier.domain.feeds import sync_feeds
    from notifier.timeutil import utcnow

    with session_scope(settings.database_url) as session:
        sync_feeds(session, settings.feed_urls, utcnow())
        session.commit()


def _announce(settings: Settings) -> None:
    base = settings.public_url
    click.secho(
        f"\n  notifier is running: {base}/\n"
        + (f"  development mailbox: {base}/dev/mailbox\n" if settings.uses_dev_mailbox else "")
        + f"  sample feed:         {base}/dev/sample-feed.xml (polled every "
        f"{settings.feed_poll_seconds}s)\n"
        '  publish an article:  .venv/bin/notifier sample-article --title "Hello" --category News\n'
        "  stop:                Ctrl-C (or SIGTERM)\n",
        fg="green",
    )


class _StopRequested(Exception):
    """SIGTERM or SIGINT reached `notifier dev`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _request_stop(signum: int, _frame: object) -> None:
    raise _StopRequested(signum)


def _run_together(commands: dict[str, list[str]], settings: Settings, started) -> None:
    """Start every command and wait. SIGTERM (a plain `kill`) and SIGINT (Ctrl-C) alike, or
    any of them exiting, stop them all: each runs in its own process group, so a worker's
    own children are stopped with it and nothing is left holding the port."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _request_stop)
    children: dict[str, subprocess.Popen] = {}
    code = 0
    try:
        for name, command in commands.items():
            children[name] = subprocess.Popen(command, start_new_session=True)
        started()
        while all(child.poll() is None for child in children.values()):
            time.sleep(0.2)
        name, ended = next((n, c) for n, c in children.items() if c.poll() is not None)
        code = ended.returncode or 1
        click.echo(f"{name} exited (code {ended.returncode}); stopping the others.", err=True)
    except _StopRequested as stop:
        click.echo(f"{stop} received: stopping {', '.join(children)}…", err=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)  # stopping already; a second Ctrl-C changes nothing
    forced = _stop_all(children, settings.dev_stop_seconds)
    how = f" ({', '.join(forced)} killed after {settings.dev_stop_seconds:g} s)" if forced else ""
    click.echo(f"Stopped {', '.join(children) or 'nothing'}{how}.", err=True)
    sys.exit(code)


def _stop_all(children: dict[str, subprocess.Popen], grace: float) -> list[str]:
    """SIGTERM to each (they stop their own children), SIGKILL to the process group of any
    still running after `grace` seconds, and to what is left of every group. Returns the
    names that had to be killed."""
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    forced = []
    for name, child in children.items():
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            forced.append(name)
    for child in children.values():
        with contextlib.suppress(ProcessLookupError):  # the group: an exited child's leftovers
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    return forced


def main() -> None:
    cli(prog_name="notifier")


if __name__ == "__main__":
    main()
