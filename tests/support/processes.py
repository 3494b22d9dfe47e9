"""Real worker, beat and web processes for end-to-end tests. We only signal what we start:
each process leads its own session, so what it starts in turn (a worker's feeds node and
pool) is ours too and is gone when the test ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from werkzeug.serving import make_server

from notifier.config import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process load the same settings as the test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")}
    env.update(
        DATABASE_URL=settings.database_url,
        CELERY_BROKER_URL=settings.broker_url,
        SECRET_KEY=settings.secret_key,
        PUBLIC_URL=settings.public_url,
        MAIL_FROM=settings.mail_from,
        FEED_URLS=",".join(settings.feed_urls),
        FEED_POLL_SECONDS=str(settings.feed_poll_seconds),
        SWEEP_SECONDS=str(settings.sweep_seconds),
        NOTIFIER_DATA_DIR=str(settings.data_dir),
        CONFIRM_RESEND_SECONDS=str(settings.confirm_resend_seconds),
        DELIVERY_RETRY_BASE_SECONDS=str(settings.delivery_retry_base_seconds),
        DELIVERY_RETRY_MAX_SECONDS=str(settings.delivery_retry_max_seconds),
        VAPID_PRIVATE_KEY=settings.vapid_private_key,
        VAPID_PUBLIC_KEY=settings.vapid_public_key,
        PUSH_ALLOWED_ORIGINS=",".join(settings.push_allowed_origins),
        ALERT_SCHEDULER_SECONDS=str(settings.alert_scheduler_seconds),
        WEBHOOK_SECRET=settings.webhook_secret,
        PYTHONUNBUFFERED="1",
    )
    if settings.smtp_url:
        env["SMTP_URL"] = settings.smtp_url
    return env


class Process:
    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "notifier.cli", *args],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, needle: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.output():
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} exited:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                tail = self.output()[-3000:]
                raise AssertionError(f"{self.name} never printed {needle!r}:\n{tail}")
            time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, as an operator stops it; what is still running after `timeout`, and
        anything it started that outlived it, is SIGKILLed. A feeds node orphaned by a
        killed worker once stayed alive into the next test on the same Redis database and
        took that test's feed task."""
        if self.popen.poll() is None:
            self.popen.terminate()
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with suppress(ProcessLookupError):  # the whole group had already ended
            os.killpg(self.popen.pid, signal.SIGKILL)  # our own session: pgid == pid
        self.popen.wait()
        self.log.close()


@contextmanager
def celery_processes(
    settings: Settings, log_dir: Path, beat: bool = True
) -> Iterator[list[Process]]:
    env = settings_env(settings)
    processes = [Process("worker", ["worker", "--concurrency=2", "-n", "e2e@%h"], env, log_dir)]
    if beat:
        processes.append(Process("beat", ["beat"], env, log_dir))
    try:
        processes[0].wait_for_output("ready.", timeout=60)
        yield processes
    except BaseException:
        for process in processes:
            print(f"----- {process.name} log -----\n{process.output()[-5000:]}")
        raise
    finally:
        for process in processes:
            process.stop()


@contextmanager
def web_server(app, port: int) -> Iterator[str]:
    """Serve a Flask app over real HTTP on a loopback port (PUBLIC_URL must name it)."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    # Polled every 50 ms, not 0.5 s: shutting the server down waits for one poll.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.2, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message or "condition not met in time")
        time.sleep(interval)
