"""A new worker pool process prepares, before its first task, what the first message of the
first article would otherwise wait for (bench/fanout.py: the first message 0.47-0.54 s after
the webhook at 20,000 readers before, 0.20-0.24 s after)."""

from __future__ import annotations

import logging

from notifier import tasks
from notifier.channels import webpush
from tests.conftest import make_settings
from tests.support.smtp import free_port


def test_warm_up_connects_builds_the_channels_compiles_templates_and_starts_push(settings):
    tasks._outlets.cache_clear()
    tasks._composer.cache_clear()

    tasks.warm_up(settings)

    assert tasks._outlets.cache_info().currsize == 1
    renderer = tasks._composer(settings).renderer
    compiled = {template.name for template in renderer.html_env.cache.values()}
    assert {"email/article/body.html", "email/alert/body.html", "push/article.json"} <= compiled
    assert "email/article/subject.txt" in {t.name for t in renderer.text_env.cache.values()}
    runtime = webpush._current
    assert runtime is not None and runtime.alive()
    key = tasks._outlets(settings)["push"].channel.pool_key  # the channel's settings
    assert (key.concurrency, key.keepalive_seconds, key.warm_seconds, key.slow_start_requests) == (
        settings.push_concurrency_per_origin, settings.push_keepalive_seconds,
        settings.push_warm_seconds, settings.push_slow_start_requests,
    )  # fmt: skip
    assert key in runtime.pools


def test_warm_up_never_raises_and_says_why_it_could_not(tmp_path, caplog):
    unreachable = make_settings(
        tmp_path, DATABASE_URL=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"
    )
    with caplog.at_level(logging.WARNING, logger="notifier.tasks"):
        tasks.warm_up(unreachable)
    [record] = [r for r in caplog.records if "warming up" in r.getMessage()]
    assert "OperationalError" in record.getMessage()
