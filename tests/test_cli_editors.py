"""`notifier create-editor`, `reset-password` and `create-token`: sentences, never tracebacks."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from notifier.cli import cli
from notifier.domain.api_tokens import token_for_bearer
from notifier.domain.editors import authenticate
from notifier.models import ApiToken, Editor, EditorRole
from notifier.timeutil import utcnow
from tests.conftest import make_settings

PASSWORD = "correct horse battery"


@pytest.fixture
def run(tmp_path, database_url):
    env = {
        "DATABASE_URL": database_url,
        "NOTIFIER_DATA_DIR": str(tmp_path / "var"),
        "SECRET_KEY": "test-secret-key",
    }

    def run(*args: str, input: str | None = None):
        return CliRunner().invoke(cli, list(args), env=env, input=input)

    return run


@pytest.fixture
def limits(tmp_path):
    return make_settings(tmp_path)


def editor(session, email: str) -> Editor | None:
    session.expire_all()
    return session.scalar(select(Editor).where(Editor.email == email))


def test_create_editor_reads_one_line_of_stdin(run, session, limits):
    result = run("create-editor", "Boss@Example.com", "--role", "admin", "--password-stdin",
                 input=f"{PASSWORD}\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Created admin boss@example.com." in result.output
    assert editor(session, "boss@example.com").role is EditorRole.ADMIN
    found = authenticate(session, "boss@example.com", PASSWORD, "127.0.0.1", utcnow(), limits)
    assert found.email == "boss@example.com"


def test_create_editor_asks_twice_without_echo(run, session):
    result = run("create-editor", "ed@example.com", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert editor(session, "ed@example.com").role is EditorRole.EDITOR


def test_mismatched_confirmation_creates_nothing(run, session):
    result = run("create-editor", "ed@example.com", input=f"{PASSWORD}\nsomething else entirely\n")
    assert result.exit_code == 1 and "do not match" in result.output
    assert "Traceback" not in result.output
    assert editor(session, "ed@example.com") is None


def test_a_too_short_password_is_a_sentence_and_exit_code_1(run, session):
    result = run("create-editor", "ed@example.com", "--password-stdin", input="short\n")
    assert result.exit_code == 1
    assert result.output == "Error: The password must be at least 12 characters long.\n"
    assert editor(session, "ed@example.com") is None


def test_bad_arguments_are_usage_errors(run):
    result = run("create-editor", "ed@example.com", "--role", "owner", "--password-stdin")
    assert result.exit_code == 2 and "Invalid value for '--role'" in result.output
    result = run("create-editor", "not an address", "--password-stdin", input=f"{PASSWORD}\n")
    assert result.exit_code == 1 and "That email address is not valid" in result.output


def test_create_editor_twice_is_refused(run):
    assert run("create-editor", "ed@example.com", "--password-stdin", input=PASSWORD).exit_code == 0
    result = run("create-editor", "ed@example.com", "--password-stdin", input=PASSWORD)
    assert result.exit_code == 1 and "already exists" in result.output


def test_reset_password(run, session, limits):
    run("create-editor", "ed@example.com", "--password-stdin", input=f"{PASSWORD}\n")
    result = run("reset-password", "ed@example.com", "--password-stdin",
                 input="a new long passphrase\n")  # fmt: skip
    assert result.exit_code == 0 and "New password set for ed@example.com." in result.output
    found = authenticate(
        session, "ed@example.com", "a new long passphrase", "::1", utcnow(), limits
    )
    assert found.email == "ed@example.com"


def test_reset_password_of_an_unknown_address(run):
    result = run("reset-password", "nobody@example.com", "--password-stdin", input=PASSWORD)
    assert result.exit_code == 1
    assert result.output == "Error: No editor has the address nobody@example.com.\n"


def test_create_token_prints_it_once_and_stores_its_hash(run, session):
    result = run("create-token", "CMS webhook")
    assert result.exit_code == 0, result.output
    plaintext = result.stdout.strip()
    assert plaintext.startswith("ntf_") and "shown again" in result.stderr
    row = session.scalar(select(ApiToken))
    assert row.name == "CMS webhook" and plaintext not in row.token_hash
    assert token_for_bearer(session, f"Bearer {plaintext}", utcnow()).id == row.id


def test_an_unreachable_database_is_a_sentence(run, tmp_path):
    broken = CliRunner().invoke(
        cli, ["create-token", "x"],
        env={"DATABASE_URL": f"sqlite:///{tmp_path}/missing.sqlite", "SECRET_KEY": "k",
             "NOTIFIER_DATA_DIR": str(tmp_path / "var")},
    )  # fmt: skip
    assert broken.exit_code == 1 and "notifier migrate" in broken.output
    assert "Traceback" not in broken.output
