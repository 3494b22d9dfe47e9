"""A production setup refuses to start on generated secrets or without a mail server."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from notifier.cli import cli
from notifier.config import ConfigError, check_production

COMPLETE = {"SECRET_KEY": "k" * 40, "VAPID_PRIVATE_KEY": "private", "VAPID_PUBLIC_KEY": "public",
            "SMTP_URL": "smtp://relay.example.com:25",
            "DATABASE_URL": "postgresql+psycopg://notifier@db.example.com/notifier",
            "CELERY_BROKER_URL": "redis://redis.example.com:6379/0"}  # fmt: skip


@pytest.mark.parametrize(
    "marker", [{"PUBLIC_URL": "https://notify.aze.media"}, {"NOTIFIER_ENV": "production"}]
)
@pytest.mark.parametrize("missing", sorted(COMPLETE))
def test_each_missing_production_value_is_named(marker, missing):
    env = {**marker, **{k: v for k, v in COMPLETE.items() if k != missing}}
    with pytest.raises(ConfigError, match=missing):
        check_production(env)


def test_a_complete_production_setup_and_development_pass():
    check_production({"PUBLIC_URL": "https://notify.aze.media", **COMPLETE})
    check_production({"PUBLIC_URL": "http://127.0.0.1:8000"})  # development: generated is fine


@pytest.mark.parametrize("command", [["web"], ["worker"], ["beat"], ["feeds-worker"]])
def test_services_refuse_to_start_with_a_sentence(tmp_path, command):
    unset = dict.fromkeys(COMPLETE, "")
    env = {"PUBLIC_URL": "https://notify.aze.media", "NOTIFIER_DATA_DIR": str(tmp_path), **unset}
    result = CliRunner().invoke(cli, command, env=env)
    assert result.exit_code == 1
    assert "production setup" in result.output and "SECRET_KEY" in result.output
    assert "Traceback" not in result.output
