"""The `notifier` command: the one entry point for operations."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from notifier.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


@click.group()
def cli() -> None:
    """Email and web-push notifications for a news site."""


@cli.command()
def migrate() -> None:
    """Create the database or upgrade it to the latest schema."""
    from sqlalchemy.exc import OperationalError

    from notifier.schema import upgrade_database

    settings = _settings()
    try:
        upgrade_database(settings.database_url)
    except OperationalError as error:
        raise click.ClickException(f"Cannot reach the database: {error.orig}") from None
    click.echo("Database is up to date.")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
def web(host: str, port: int, workers: int) -> None:
    """Serve the web app and API with gunicorn."""
    from gunicorn.app.base import BaseApplication

    from notifier.web import create_app

    settings = _settings()

    class _Gunicorn(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", "-")

        def load(self):
            return create_app(settings)

    _Gunicorn().run()


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker (extra arguments go to `celery worker`)."""
    from notifier.celery_app import make_celery

    make_celery(_settings()).worker_main(["worker", "--loglevel=INFO", *celery_args])


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def beat(celery_args: tuple[str, ...]) -> None:
    """Run Celery beat: feed polling and the sweeper on their schedules."""
    from notifier.celery_app import make_celery

    make_celery(_settings()).start(["beat", "--loglevel=INFO", *celery_args])


@cli.command("sample-article")
@click.option("--title", required=True, help="Headline of the new article.")
@click.option("--category", "categories", multiple=True, default=["News"], show_default=True)
@click.option("--summary", default="A new article published for trying notifier.")
@click.option("--image-url", default=None)
def sample_article(title: str, categories: tuple[str, ...], summary: str, image_url: str | None):
    """Publish an article to the local sample feed (development)."""
    from notifier.sample_feed import add_sample_article

    settings = _settings()
    guid = add_sample_article(
        settings.sample_feed_path, title, list(categories), summary, image_url
    )
    click.echo(f"Added {guid} to {settings.sample_feed_path}; the next feed poll announces it.")


@cli.command("vapid-keys")
def vapid_keys() -> None:
    """Print a new VAPID key pair for web push, as environment variables."""
    from notifier.vapid import generate_keypair

    private, public = generate_keypair()
    click.echo(f"VAPID_PRIVATE_KEY={private}\nVAPID_PUBLIC_KEY={public}")


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


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def dev(host: str, port: int) -> None:
    """Everything in one terminal: migrate, then web + worker + beat on embedded defaults."""
    os.environ["NOTIFIER_DEV"] = "1"
    os.environ.setdefault("PUBLIC_URL", f"http://{host}:{port}")
    os.environ.setdefault("FEED_POLL_SECONDS", "10")
    settings = _settings()
    from notifier.sample_feed import ensure_sample_feed
    from notifier.schema import upgrade_database

    upgrade_database(settings.database_url)
    ensure_sample_feed(settings.sample_feed_path)
    exe = [sys.executable, "-m", "notifier.cli"]
    children = [
        subprocess.Popen([*exe, "web", "--host", host, "--port", str(port), "--workers", "1"]),
        subprocess.Popen([*exe, "worker"]),
        subprocess.Popen([*exe, "beat"]),
    ]
    _announce(settings)
    _supervise(children)


def _announce(settings: Settings) -> None:
    base = settings.public_url
    click.secho(
        f"\n  notifier is running: {base}/\n"
        + (f"  development mailbox: {base}/dev/mailbox\n" if settings.uses_dev_mailbox else "")
        + f"  sample feed:         {base}/dev/sample-feed.xml (polled every "
        f"{settings.feed_poll_seconds}s)\n"
        '  publish an article:  .venv/bin/notifier sample-article --title "Hello" --category News\n'
        "  stop:                Ctrl-C\n",
        fg="green",
    )


def _supervise(children: list[subprocess.Popen]) -> None:
    """Wait; if any child exits or Ctrl-C arrives, stop them all."""
    code = 0
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        code = next(child.returncode for child in children if child.poll() is not None) or 1
        click.echo("A process stopped; stopping the others.", err=True)
    except KeyboardInterrupt:
        pass
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
    sys.exit(code)


def main() -> None:
    cli(prog_name="notifier")


if __name__ == "__main__":
    main()
