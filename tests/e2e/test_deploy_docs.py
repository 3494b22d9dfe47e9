"""The README's configuration table and docker-compose.yml stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from notifier.cli import cli

ROOT = Path(__file__).resolve().parents[2]
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


def test_every_long_running_service_has_a_healthcheck_that_exists(tmp_path):
    from click.testing import CliRunner

    from notifier.web import create_app
    from tests.conftest import make_settings

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name, service in services.items():
        if name != "migrate":  # one-shot: runs to completion, nothing to probe
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    routes = {rule.rule for rule in create_app(make_settings(tmp_path)).url_map.iter_rules()}
    for name in ("web", "worker", "beat"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD", name  # no shell in the way of the exit code
        if test[1] == "notifier":
            # The command and its options parse (--help stops before doing anything).
            result = CliRunner().invoke(cli, [*test[2:], "--help"])
            assert result.exit_code == 0, (name, result.output)
        else:  # python:3.12-slim has no curl: urllib against our own port
            assert test[1:3] == ["python", "-c"], name
            path = re.search(r"http://127\.0\.0\.1:8000(/\w+)", test[3]).group(1)
            assert path in routes, (name, path)
    flower = services["flower"]
    assert flower["image"] == "mher/flower:2.0"
    assert "redis" in flower["depends_on"]
    assert flower["environment"]["CELERY_BROKER_URL"].startswith("redis://")
