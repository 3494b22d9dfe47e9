"""The README's configuration table and docker-compose.yml stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from notifier.cli import cli

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_READ = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', (ROOT / "notifier/config.py").read_text()))
INTERNAL = {"NOTIFIER_DEV"}  # set by `notifier dev` itself


def documented() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))


def test_every_setting_the_code_reads_is_in_the_readme_table():
    missing = SETTINGS_READ - INTERNAL - documented()
    assert not missing, f"undocumented settings: {missing}"


def test_compose_uses_only_real_settings_and_commands():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"web", "worker", "beat", "redis", "postgres", "mailpit"} <= set(services)
    for name in ("web", "worker", "beat", "migrate"):
        service = services[name]
        assert set(service["environment"]) <= documented(), name
        command = service["command"]
        if command[0] == "notifier":
            assert command[1] in cli.commands, command
        else:
            assert command[0] == "gunicorn" and command[-1] == "web:app"
    assert services["web"]["environment"]["DATABASE_URL"].startswith("postgresql+psycopg://")
    assert services["worker"]["environment"]["CELERY_BROKER_URL"].startswith("redis://")
