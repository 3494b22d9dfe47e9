"""The feeds node: `notifier worker` is one command but two Celery nodes.

The sending node consumes the `celery` queue with WORKER_CONCURRENCY processes; beside it
runs a small feeds node, consuming only the `feeds` queue in FEED_CONCURRENCY threads (feed
fetches wait on other people's servers, which threads do cheaply). So a slow feed never
takes a sending slot. The sending node starts the feeds node, starts it again if it dies,
and stops it when it stops; a feeds node whose sending node is gone (killed) stops itself.
Each looks at the other every WORKER_HEARTBEAT_SECONDS.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

from celery import Celery, bootsteps

log = logging.getLogger(__name__)

FEEDS_QUEUE = "feeds"
SENDING_QUEUE = "celery"
FEED_TASKS = ("notifier.tasks.poll_feeds", "notifier.tasks.poll_feed")
PARENT_PID_ENV = "NOTIFIER_FEEDS_PARENT_PID"


def feed_routes() -> dict[str, dict[str, str]]:
    return {name: {"queue": FEEDS_QUEUE} for name in FEED_TASKS}


def feeds_node_name(hostname: str) -> str:
    """'e2e@box' -> 'feeds-e2e@box': its own heartbeat row, and visibly the sender's."""
    name, at, host = hostname.partition("@")
    return f"feeds-{name}{at}{host}"


class FeedsNode(bootsteps.StartStopStep):
    """In the sending node: run the feeds node as a child process for as long as we run."""

    requires = ("celery.worker.components:Timer",)

    def start(self, worker) -> None:
        settings = worker.app.notifier_settings
        self.node_name = feeds_node_name(worker.hostname)
        # Its fetches under way end within FEED_TIMEOUT_SECONDS: then it has stopped.
        self.stop_grace = settings.feed_timeout_seconds + 10
        self.child = self._spawn()
        self.tref = worker.timer.call_repeatedly(settings.worker_heartbeat_seconds, self.check, ())

    def _spawn(self) -> subprocess.Popen:
        env = {**os.environ, PARENT_PID_ENV: str(os.getpid())}
        command = [sys.executable, "-m", "notifier.cli", "feeds-worker", "-n", self.node_name]
        return subprocess.Popen(command, env=env)

    def check(self) -> None:
        if self.child.poll() is not None:
            log.error("feeds node %s exited (%s); starting it again", self.node_name,
                      self.child.returncode)  # fmt: skip
            self.child = self._spawn()

    def stop(self, parent) -> None:  # parent: the worker, as Celery names it
        if getattr(self, "tref", None) is not None:
            parent.timer.cancel(self.tref)
            self.tref = None
        child = getattr(self, "child", None)
        if child is None or child.poll() is not None:
            return
        child.terminate()  # a warm shutdown: fetches under way end within their timeout
        try:
            child.wait(self.stop_grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    terminate = shutdown = stop  # a cold shutdown stops the feeds node too


class ParentWatch(bootsteps.StartStopStep):
    """In a feeds node started by `notifier worker`: stop when that sending node is gone."""

    requires = ("celery.worker.components:Timer",)

    def start(self, worker) -> None:
        self.parent = int(os.environ.get(PARENT_PID_ENV, "0"))
        seconds = worker.app.notifier_settings.worker_heartbeat_seconds
        self.tref = worker.timer.call_repeatedly(seconds, self.check, ())

    def check(self) -> None:
        if os.getppid() != self.parent:
            log.warning("the sending node (pid %s) is gone; the feeds node stops", self.parent)
            os.kill(os.getpid(), signal.SIGTERM)  # Celery's own warm shutdown

    def stop(self, worker) -> None:
        if getattr(self, "tref", None) is not None:
            worker.timer.cancel(self.tref)
            self.tref = None


def add_feeds_node(app: Celery) -> None:
    app.steps["worker"].add(FeedsNode)


def watch_parent(app: Celery) -> None:
    if os.environ.get(PARENT_PID_ENV):
        app.steps["worker"].add(ParentWatch)
