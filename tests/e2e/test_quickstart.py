"""The README's run command on embedded defaults: SQLite, SQLite broker, development mailbox.

A newcomer's loop, as they would click it: subscribe, read the confirmation in the dev
mailbox, publish a sample article, read the notification, unsubscribe with one click.
"""

from __future__ import annotations

import html
import os
import re
import signal
import subprocess
import sys

import requests

from tests.support.processes import wait_until
from tests.support.smtp import free_port


def _mailbox_subjects(base: str) -> list[tuple[str, str]]:
    page = requests.get(f"{base}/dev/mailbox", timeout=5).text
    return re.findall(r'<a href="(/dev/mailbox/[^"]+)">([^<]+)</a>', page)


def _open(base: str, subject_start: str) -> str:
    links = [href for href, subject in _mailbox_subjects(base) if subject.startswith(subject_start)]
    assert len(links) == 1, _mailbox_subjects(base)
    return html.unescape(requests.get(base + links[0], timeout=5).text)


def test_dev_command_runs_the_whole_loop_offline(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL",
           "SMTP_URL", "FEED_URLS", "PUBLIC_URL", "SECRET_KEY")}  # fmt: skip
    env.update(NOTIFIER_DATA_DIR=str(tmp_path / "var"), FEED_POLL_SECONDS="1", PYTHONUNBUFFERED="1")
    log = (tmp_path / "dev.log").open("wb")
    dev = subprocess.Popen(
        [sys.executable, "-m", "notifier.cli", "dev", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_until(lambda: _up(base), timeout=60, message="notifier dev did not start")
        answer = requests.post(
            f"{base}/api/v1/subscriptions",
            json={"email": "newcomer@example.com", "categories": ["science"]}, timeout=5,
        )  # fmt: skip
        assert answer.status_code == 202

        wait_until(lambda: _mailbox_subjects(base), timeout=30, message="no confirmation")
        confirm_url = re.search(rf"{base}/confirm/[\w.-]+", _open(base, "Confirm")).group(0)
        assert "You are subscribed" in requests.post(confirm_url, timeout=5).text

        subprocess.run(
            [sys.executable, "-m", "notifier.cli", "sample-article", "--title", "Hello, reader",
             "--category", "Science"], cwd=tmp_path, env=env, check=True, capture_output=True,
        )  # fmt: skip
        wait_until(lambda: len(_mailbox_subjects(base)) == 2, timeout=40, message="no article")
        article_page = _open(base, "Hello, reader")
        unsubscribe_url = re.search(rf"{base}/unsubscribe/[\w.-]+", article_page).group(0)
        done = requests.post(unsubscribe_url, data={"List-Unsubscribe": "One-Click"}, timeout=5)
        assert done.status_code == 200 and "will get no more emails" in done.text
    except (AssertionError, requests.ConnectionError) as failure:
        tail = (tmp_path / "dev.log").read_text(errors="replace")[-6000:]
        raise AssertionError(f"{failure}\n----- notifier dev log -----\n{tail}") from failure
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        dev.wait(timeout=30)
        log.close()
    assert dev.returncode == 0, (tmp_path / "dev.log").read_text()[-3000:]


def _up(base: str) -> bool:
    try:
        return requests.get(base, timeout=2).status_code == 200
    except (requests.ConnectionError, requests.Timeout):  # up, but not answering yet
        return False
